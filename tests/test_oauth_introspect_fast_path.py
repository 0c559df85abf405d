"""The introspection fast path (app/oauth/fast_introspection.py): the answers of the full path,
byte for byte, and every request it must leave to the full path."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app import credentials
from app.oauth.fast_introspection import FastIntrospection
from tests.support import add_legacy_key, count_hand_overs, mint

T0 = datetime(2030, 3, 1, tzinfo=UTC)
LEGACY = "legacy-static-key-0123456789"


@pytest.fixture
def handed_over(app):
    """How many requests the fast path handed to Flask (the full path) so far."""
    calls, undo = count_hand_overs(app, FastIntrospection)
    yield calls
    undo()


def _introspect(client, caller, token, **extra):
    return client.post("/oauth/introspect", data={"token": token, **extra}, auth=caller.auth)


def _warm(client, caller, token):
    """The first introspection by a key records its use and derives the issuer: the full
    path's work. Later ones are common."""
    assert _introspect(client, caller, token).status_code == 200


def _comparable(response):
    headers = sorted((name, value) for name, value in response.headers.items()
                     if name != "X-Request-ID")
    return response.status_code, response.get_data(), headers


def test_a_common_introspection_never_reaches_flask(client, factory, handed_over):
    caller = factory.key()
    token = mint(client, caller)
    _warm(client, caller, token)
    handed_over.clear()
    response = _introspect(client, caller, token)
    assert response.status_code == 200 and response.get_json()["active"] is True
    posted = client.post("/oauth/introspect", data={
        "token": token, "token_type_hint": "access_token",
        "client_id": caller.client_id, "client_secret": caller.secret})
    assert posted.get_json()["active"] is True
    assert handed_over == []
    assert response.headers["X-Request-ID"]


def _answers(app, client, caller, token, **extra):
    app.config["KEYMINT_FAST_PATHS"] = False
    full = _comparable(_introspect(client, caller, token, **extra))
    app.config["KEYMINT_FAST_PATHS"] = True
    fast = _comparable(_introspect(client, caller, token, **extra))
    return full, fast


def test_answers_are_the_full_paths_byte_for_byte(app, client, factory, handed_over):
    caller = factory.key()
    other_workspace = factory.key()
    key = factory.key(caller.workspace, scopes="read write")
    live, revoked = mint(client, key, scope="read"), mint(client, key)
    client.post("/oauth/revoke", data={"token": revoked}, auth=key.auth)
    foreign = mint(client, other_workspace)
    bad_checksum = credentials.new_access_token()[:-1] + "0"
    _warm(client, caller, live)
    for token in (live, revoked, foreign, credentials.new_access_token(), bad_checksum,
                  "sk_notatoken"):
        handed_over.clear()
        full, fast = _answers(app, client, caller, token)
        assert fast == full, token
        assert len(handed_over) == 1, token  # only the request with the fast path off
    assert b'"active": true' in _answers(app, client, caller, live)[1][1]


def test_an_https_answer_carries_hsts_as_the_full_path_does(app, client, factory):
    caller = factory.key()
    token = mint(client, caller)
    secure = {"base_url": "https://localhost"}
    client.post("/oauth/introspect", data={"token": token}, auth=caller.auth, **secure)
    app.config["KEYMINT_FAST_PATHS"] = False
    full = client.post("/oauth/introspect", data={"token": token}, auth=caller.auth, **secure)
    app.config["KEYMINT_FAST_PATHS"] = True
    fast = client.post("/oauth/introspect", data={"token": token}, auth=caller.auth, **secure)
    assert _comparable(fast) == _comparable(full)
    assert fast.headers["Strict-Transport-Security"].startswith("max-age=")
    assert fast.get_json()["iss"] == "https://localhost"


@pytest.mark.parametrize("case", [
    "wrong_secret", "unknown_client", "query_string", "repeated_token", "unknown_parameter",
    "json_body", "no_introspect_scope", "secret_in_header_and_body", "route_parameters",
    "legacy_key", "empty_token", "malformed_basic", "x_api_key"])
def test_everything_else_goes_to_the_full_path(app, client, factory, handed_over, case):
    caller = factory.key()
    token = mint(client, caller)
    _warm(client, caller, token)
    auth, data, kwargs = caller.auth, {"token": token}, {}
    expected = 200
    if case == "wrong_secret":
        auth, expected = (caller.client_id, credentials.new_secret()), 401
    elif case == "unknown_client":
        auth, expected = (credentials.new_client_id(), credentials.new_secret()), 401
    elif case == "query_string":
        kwargs["query_string"], expected = {"x": "1"}, 400
    elif case == "repeated_token":
        data, expected = {"token": [token, token]}, 400
    elif case == "unknown_parameter":
        data = {"token": token, "extension": "1"}
    elif case == "json_body":
        kwargs["json"], data, expected = {"token": token}, None, 400
    elif case == "no_introspect_scope":
        auth, expected = factory.key(caller.workspace, scopes="keys:read").auth, 403
    elif case == "secret_in_header_and_body":
        data, expected = {"token": token, "client_secret": caller.secret}, 400
    elif case == "route_parameters":
        data = {"token": token, "method": "GET", "path": "/v1/things"}
    elif case == "legacy_key":
        add_legacy_key(app, caller.workspace, LEGACY)
        data = {"token": LEGACY}
    elif case == "empty_token":
        data, expected = {"token": ""}, 400
    elif case == "malformed_basic":
        auth, kwargs["headers"], expected = None, {"Authorization": "Basic !!!"}, 401
    elif case == "x_api_key":
        kwargs["headers"] = {"X-API-Key": LEGACY}
    handed_over.clear()
    response = client.post("/oauth/introspect", data=data, auth=auth, **kwargs)
    assert response.status_code == expected, response.get_data(as_text=True)
    assert handed_over == ["/oauth/introspect"]


def test_a_key_whose_last_use_is_due_is_recorded_by_the_full_path(app, client, factory,
                                                                  handed_over):
    interval = app.config["KEYMINT_LAST_USED_INTERVAL"]
    with freeze_time(T0) as clock:
        caller = factory.key()
        token = mint(client, caller)
        _warm(client, caller, token)
        clock.tick(timedelta(seconds=interval - 1))
        handed_over.clear()
        assert _introspect(client, caller, token).get_json()["active"] is True
        assert handed_over == []
        clock.tick(timedelta(seconds=1))  # exactly `interval` after the recorded use
        assert _introspect(client, caller, token).get_json()["active"] is True
        assert handed_over == ["/oauth/introspect"]


def test_the_kill_switch_sends_everything_to_the_full_path(app, client, factory, handed_over):
    caller = factory.key()
    token = mint(client, caller)
    _warm(client, caller, token)
    app.config["KEYMINT_FAST_PATHS"] = False
    handed_over.clear()
    assert _introspect(client, caller, token).get_json()["active"] is True
    assert handed_over == ["/oauth/introspect"]


def test_a_revocation_is_seen_by_the_very_next_fast_answer(client, factory, handed_over):
    caller = factory.key()
    key = factory.key(caller.workspace)
    token = mint(client, key)
    _warm(client, caller, token)
    assert _introspect(client, caller, token).get_json()["active"] is True
    client.post("/oauth/revoke", data={"token": token}, auth=key.auth)
    handed_over.clear()
    assert _introspect(client, caller, token).get_json() == {"active": False}
    assert handed_over == []


def test_the_request_line_and_metrics_of_a_fast_answer(client, factory, handed_over, caplog):
    caller = factory.key()
    token = mint(client, caller)
    _warm(client, caller, token)
    before = client.get("/metrics").get_data(as_text=True)
    handed_over.clear()
    with caplog.at_level(logging.INFO, logger="keymint.request"):
        response = client.post("/oauth/introspect", data={"token": token}, auth=caller.auth,
                               headers={"X-Request-ID": "rs-trace-0001",
                                        "User-Agent": "orders-api/1.0"})
    assert handed_over == [] and response.headers["X-Request-ID"] == "rs-trace-0001"
    [line] = [r for r in caplog.records
              if r.name == "keymint.request" and getattr(r, "request_id", "") == "rs-trace-0001"]
    assert (line.method, line.path, line.status) == ("POST", "/oauth/introspect", 200)
    assert (line.request_id, line.client_id, line.user_agent) == (
        "rs-trace-0001", caller.client_id, "orders-api/1.0")
    assert line.error_code is None and line.client_ip == "127.0.0.1"
    after = client.get("/metrics").get_data(as_text=True)
    series = ('keymint_http_requests_total{endpoint="/oauth/introspect",method="POST",'
              'status="200"}')
    assert _sample(after, series) == _sample(before, series) + 1


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rate_limits_hold_on_the_fast_path(app_factory, database_url):
    app, factory = app_factory(database_url, KEYMINT_RATELIMIT_ENABLED=True,
                               KEYMINT_RATELIMIT_INTROSPECT="3 per minute")
    client = app.test_client()
    caller = factory.key()
    token = mint(client, caller)
    answers = [_introspect(client, caller, token).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]


def test_a_locked_out_pair_is_refused_even_with_the_right_secret(app_factory, database_url):
    app, factory = app_factory(database_url, KEYMINT_RATELIMIT_ENABLED=True,
                               KEYMINT_RATELIMIT_FAILED_CLIENT_IP="2 per minute")
    client = app.test_client()
    caller = factory.key()
    token = mint(client, caller)
    _warm(client, caller, token)
    wrong = (caller.client_id, credentials.new_secret())
    for _ in range(2):
        assert client.post("/oauth/introspect", data={"token": token},
                           auth=wrong).status_code == 401
    refused = _introspect(client, caller, token)
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"


def test_a_handed_over_request_is_not_read_twice(app, client, factory, handed_over):
    """What the fast path read goes with the request: the full path reads nothing again."""
    from tests.test_statement_counts import counted

    with freeze_time(T0) as clock:
        caller = factory.key()
        token = mint(client, caller)
        clock.tick(timedelta(seconds=app.config["KEYMINT_LAST_USED_INTERVAL"]))
        handed_over.clear()
        with counted(app) as seen:  # the use is due: recorded by the full path
            assert _introspect(client, caller, token).get_json()["active"] is True
        assert handed_over == ["/oauth/introspect"]
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        updates = [s for s in seen if s.lstrip().upper().startswith("UPDATE")]
        assert len(selects) == 1 and len(updates) == 1, seen
        handed_over.clear()
        with counted(app) as seen:  # a wrong secret: refused and audited by the full path
            wrong = (caller.client_id, credentials.new_secret())
            assert client.post("/oauth/introspect", data={"token": token},
                               auth=wrong).status_code == 401
        assert handed_over == ["/oauth/introspect"]
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")
                   and "access_tokens" in s]
        assert len(selects) == 1, seen
