"""Rate limits on the OAuth endpoints and legacy-key requests, in memory and in Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from freezegun import freeze_time

from tests.support import (
    IN_CI,
    Factory,
    ServerProcess,
    add_legacy_key,
    audit_events,
    make_team,
    mint,
)

REDIS_URL = os.environ.get("KEYMINT_TEST_REDIS_URL", "")
GRANT = {"grant_type": "client_credentials"}


def _redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    client.ping()
    return client


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true but KEYMINT_TEST_REDIS_URL is not set")
        pytest.skip("Redis tests need KEYMINT_TEST_REDIS_URL (set by .ci/run)")
    try:
        _redis_client()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"CI=true but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return REDIS_URL


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Limiter storage settings with a key prefix no other test (or parallel run) shares."""
    prefix = f"keymint-test-{uuid.uuid4().hex}"
    if request.param == "memory":
        yield {"KEYMINT_RATELIMIT_STORAGE_URL": "memory://",
               "KEYMINT_RATELIMIT_KEY_PREFIX": prefix}
        return
    url = request.getfixturevalue("redis_url")
    yield {"KEYMINT_RATELIMIT_STORAGE_URL": url, "KEYMINT_RATELIMIT_KEY_PREFIX": prefix}
    client = _redis_client()
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)


@pytest.fixture
def make_app(app_config: dict[str, Any], storage: dict[str, str]) -> Iterator[Any]:
    """create_app with rate limiting on (the functional fixtures switch it off)."""
    from app import create_app
    from app.extensions import db

    made = []

    def make(**settings: Any) -> Any:
        application = create_app({**app_config, **storage, "KEYMINT_RATELIMIT_ENABLED": True,
                                  **settings})
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def token_request(client, auth, ip: str = "10.0.0.1"):
    return client.post("/oauth/token", data=GRANT, auth=auth, environ_base={"REMOTE_ADDR": ip})


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.get_json()
    body = response.get_json()
    assert body["error"] == "rate_limited"
    assert set(body) == {"error", "error_description"}
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"


def test_per_client_limit_on_token_endpoint(make_app):
    app = make_app(KEYMINT_RATELIMIT_CLIENT="3 per hour")
    factory, client = Factory(app), app.test_client()
    key, other = factory.key(), factory.key()
    for n in range(3):  # from three addresses: the limit follows the client_id
        assert token_request(client, key.auth, ip=f"10.0.0.{n}").status_code == 200
    assert_rate_limited(token_request(client, key.auth, ip="10.0.0.9"))
    assert token_request(client, other.auth).status_code == 200


def test_per_ip_limit_covers_every_client_behind_it(make_app):
    app = make_app(KEYMINT_RATELIMIT_IP="3 per hour")
    factory, client = Factory(app), app.test_client()
    keys = [factory.key() for _ in range(4)]
    for key in keys[:3]:
        assert token_request(client, key.auth, ip="192.0.2.1").status_code == 200
    assert_rate_limited(token_request(client, keys[3].auth, ip="192.0.2.1"))
    assert token_request(client, keys[3].auth, ip="192.0.2.2").status_code == 200


def test_failed_authentications_throttle_a_client_id_from_one_ip(make_app):
    app = make_app(KEYMINT_RATELIMIT_FAILED_CLIENT_IP="3 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    wrong = (key.client_id, "sk_" + "A" * 46)
    for _ in range(3):
        assert token_request(client, wrong, ip="198.51.100.7").status_code == 401
    # That address's next guess at that key id is refused before the secret is compared,
    # on every OAuth endpoint; the same key id from elsewhere is unaffected.
    assert_rate_limited(token_request(client, wrong, ip="198.51.100.7"))
    assert_rate_limited(client.post("/oauth/introspect", data={"token": "x"}, auth=wrong,
                                    environ_base={"REMOTE_ADDR": "198.51.100.7"}))
    assert token_request(client, key.auth, ip="203.0.113.1").status_code == 200


def test_nobody_can_lock_a_key_out_by_guessing_its_secret(make_app):
    """Issue #15 §1: ten wrong secrets a minute from one IP made keymint refuse the right
    secret with 429 on every endpoint. With the default limits, the guesser is throttled and
    the key keeps working from its own address; the per-client_id total only alerts."""
    from app.runtime import metrics

    app = make_app()
    factory, client = Factory(app), app.test_client()
    key = factory.key()  # holds the introspect scope
    token = mint(client, key)
    wrong = (key.client_id, "sk_" + "A" * 46)
    attackers = [f"198.51.100.{n}" for n in range(1, 7)]
    for ip in attackers:  # 60 wrong secrets a minute, 10 from each address
        for _ in range(10):
            assert token_request(client, wrong, ip=ip).status_code == 401
    assert_rate_limited(token_request(client, wrong, ip=attackers[0]))
    # The right secret from the key's own address works on every endpoint.
    assert token_request(client, key.auth, ip="203.0.113.1").status_code == 200
    for path, data in (("/oauth/revoke", {"token": "at_unknown"}),
                       ("/oauth/rotate", {"token": token})):
        assert client.post(path, data=data, auth=key.auth,
                           environ_base={"REMOTE_ADDR": "203.0.113.1"}).status_code == 200
    assert client.post("/oauth/introspect", data={"token": mint(client, key)}, auth=key.auth,
                       environ_base={"REMOTE_ADDR": "203.0.113.1"}).get_json()["active"] is True
    # 60 failures against a threshold of 10 a minute: every one past the 10th is counted
    assert metrics.METRICS.rate_limit_alerts.labels("failed_auth_client")._value.get() >= 50
    events = audit_events(app, "ratelimit.alert")
    assert len(events) == 1 and events[0].target_id == key.client_id
    assert events[0].details["limit"] == "failed_auth_client"
    assert not audit_events(app, "ratelimit.exceeded") or all(
        e.details["limit"] != "failed_auth_client" for e in audit_events(app,
                                                                          "ratelimit.exceeded"))


def test_failed_authentications_throttle_an_ip_across_client_ids(make_app):
    app = make_app(KEYMINT_RATELIMIT_FAILED_IP="3 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    for _ in range(3):  # credential stuffing: a new made-up key id each time
        stuffed = (factory.key().client_id, "sk_" + "B" * 46)
        assert token_request(client, stuffed, ip="192.0.2.66").status_code == 401
    assert_rate_limited(token_request(client, key.auth, ip="192.0.2.66"))
    assert token_request(client, key.auth, ip="192.0.2.67").status_code == 200


def test_successful_requests_do_not_spend_the_failure_budget(make_app):
    app = make_app(KEYMINT_RATELIMIT_FAILED_CLIENT_IP="2 per hour",
                   KEYMINT_RATELIMIT_FAILED_IP="2 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    for _ in range(5):
        assert token_request(client, key.auth).status_code == 200


def test_introspection_has_its_own_per_client_limit(make_app):
    app = make_app(KEYMINT_RATELIMIT_INTROSPECT="2 per hour", KEYMINT_RATELIMIT_CLIENT="50/hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    token = mint(client, key)
    for _ in range(2):
        assert client.post("/oauth/introspect", data={"token": token},
                           auth=key.auth).get_json()["active"] is True
    assert_rate_limited(client.post("/oauth/introspect", data={"token": token}, auth=key.auth))
    assert token_request(client, key.auth).status_code == 200


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/rotate"])
def test_revoke_and_rotate_are_limited_per_client(make_app, path):
    app = make_app(KEYMINT_RATELIMIT_CLIENT="1 per hour", KEYMINT_RATELIMIT_REVOKE="1 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    token = mint(client, key)
    assert client.post(path, data={"token": token}, auth=key.auth).status_code == 200
    assert_rate_limited(client.post(path, data={"token": token}, auth=key.auth))


def test_client_secret_post_is_keyed_by_the_form_client_id(make_app):
    app = make_app(KEYMINT_RATELIMIT_CLIENT="1 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    form = {**GRANT, "client_id": key.client_id, "client_secret": key.secret}
    assert client.post("/oauth/token", data=form).status_code == 200
    assert_rate_limited(client.post("/oauth/token", data=form,
                                    environ_base={"REMOTE_ADDR": "10.9.9.9"}))


def test_requests_that_do_not_authenticate_never_spend_the_keys_budget(make_app):
    """Issue #15 §1: 120 requests with `-u CID:x` and a JSON body (or a query string) drained
    the key's budget without its secret. They now count against the sender's IP only."""
    app = make_app(KEYMINT_RATELIMIT_CLIENT="5 per hour", KEYMINT_RATELIMIT_IP="12 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    probe = (key.client_id, "x")
    attacker = {"REMOTE_ADDR": "198.51.100.9"}
    for _ in range(4):
        assert client.post("/oauth/token", json=GRANT, auth=probe,
                           environ_base=attacker).status_code == 400
        assert client.post("/oauth/token?grant_type=client_credentials", data=GRANT,
                           auth=probe, environ_base=attacker).status_code == 400
        # the real secret in a malformed request has not authenticated either
        assert client.post("/oauth/token", json=GRANT, auth=key.auth,
                           environ_base=attacker).status_code == 400
    assert_rate_limited(client.post("/oauth/token", json=GRANT, auth=probe,
                                    environ_base=attacker))
    for _ in range(5):  # the key's whole budget is still there for its owner
        assert token_request(client, key.auth, ip="203.0.113.1").status_code == 200
    assert_rate_limited(token_request(client, key.auth, ip="203.0.113.1"))


def test_failing_introspection_counts_against_the_ip_only(make_app):
    app = make_app(KEYMINT_RATELIMIT_INTROSPECT="3 per hour", KEYMINT_RATELIMIT_IP="4 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key(scopes="introspect")
    attacker = {"REMOTE_ADDR": "198.51.100.10"}
    for _ in range(4):
        assert client.post("/oauth/introspect", json={"token": "x"}, auth=(key.client_id, "x"),
                           environ_base=attacker).status_code == 400
    assert_rate_limited(client.post("/oauth/introspect", data={"token": "x"},
                                    environ_base=attacker))
    for _ in range(3):
        assert client.post("/oauth/introspect", data={"token": "x"}, auth=key.auth,
                           environ_base={"REMOTE_ADDR": "203.0.113.2"}).status_code == 200


def test_a_resource_server_is_not_refused_at_default_limits(make_app):
    """Issue #15 §1: introspection was capped at 600/min per IP (10/s for a resource server
    that introspects every request). Authenticated introspection and revocation now count
    per key only, against a default no single resource server reaches."""
    app = make_app()
    factory, client = Factory(app), app.test_client()
    server_key = factory.key(scopes="introspect")
    token = mint(client, factory.key())
    host = {"REMOTE_ADDR": "10.20.30.40"}
    codes = [client.post("/oauth/introspect", data={"token": token}, auth=server_key.auth,
                         environ_base=host).status_code for _ in range(700)]
    assert codes.count(200) == 700
    codes = [client.post("/oauth/revoke", data={"token": "at_unknown"}, auth=server_key.auth,
                         environ_base=host).status_code for _ in range(610)]
    assert codes.count(200) == 610


def test_rate_limit_event_is_audited_once_per_window_and_counted(make_app):
    from app.runtime import metrics

    app = make_app(KEYMINT_RATELIMIT_CLIENT="1 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    before = metrics.METRICS.rate_limited.labels("client", "/oauth/token")._value.get()
    assert token_request(client, key.auth).status_code == 200
    for _ in range(10):
        assert_rate_limited(token_request(client, key.auth))
    events = audit_events(app, "ratelimit.exceeded")
    assert len(events) == 1
    event = events[0]
    assert (event.target_type, event.target_id, event.actor_key) == ("key", key.client_id,
                                                                     key.client_id)
    assert event.workspace_id is not None and event.details["limit"] == "client"
    after = metrics.METRICS.rate_limited.labels("client", "/oauth/token")._value.get()
    assert after - before == 10


def test_limits_reset_after_the_window(make_app, storage):
    if storage["KEYMINT_RATELIMIT_STORAGE_URL"] != "memory://":
        pytest.skip("freezegun moves the app's clock, not the Redis server's key expiry")
    with freeze_time("2030-01-01T00:00:00Z") as frozen:
        app = make_app(KEYMINT_RATELIMIT_FAILED_CLIENT_IP="2 per minute")
        factory, client = Factory(app), app.test_client()
        key = factory.key()
        wrong = (key.client_id, "sk_" + "C" * 46)
        for _ in range(2):
            assert token_request(client, wrong).status_code == 401
        assert_rate_limited(token_request(client, key.auth))
        frozen.tick(30)
        assert_rate_limited(token_request(client, key.auth))
        frozen.tick(91)  # two full windows later the sliding counter holds nothing
        assert token_request(client, key.auth).status_code == 200


def test_limits_off_when_disabled(make_app):
    app = make_app(KEYMINT_RATELIMIT_ENABLED=False, KEYMINT_RATELIMIT_FAILED_CLIENT="1/hour",
                   KEYMINT_RATELIMIT_CLIENT="1/hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    for _ in range(3):
        assert token_request(client, (key.client_id, "sk_x")).status_code == 401
    assert token_request(client, key.auth).status_code == 200


def test_forged_forwarded_for_is_ignored_without_trusted_proxies(make_app):
    app = make_app(KEYMINT_RATELIMIT_IP="2 per hour")
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    for n in range(2):
        response = client.post("/oauth/token", data=GRANT, auth=key.auth,
                               headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert response.status_code == 200
    assert_rate_limited(client.post("/oauth/token", data=GRANT, auth=key.auth,
                                    headers={"X-Forwarded-For": "203.0.113.99"}))


def test_trusted_proxy_hop_decides_the_client_ip(make_app):
    app = make_app(KEYMINT_RATELIMIT_IP="2 per hour", KEYMINT_TRUSTED_PROXIES=1)
    factory, client = Factory(app), app.test_client()
    key = factory.key()

    def via_proxy(forwarded: str):
        return client.post("/oauth/token", data=GRANT, auth=key.auth,
                           headers={"X-Forwarded-For": forwarded})

    # Whatever the client wrote in front, the proxy's appended address is the one used.
    assert via_proxy("1.1.1.1, 203.0.113.7").status_code == 200
    assert via_proxy("2.2.2.2, 203.0.113.7").status_code == 200
    assert_rate_limited(via_proxy("3.3.3.3, 203.0.113.7"))
    assert via_proxy("1.1.1.1, 203.0.113.8").status_code == 200


def _legacy_view():
    from flask import jsonify, request

    if request.headers.get("X-API-Key", "").startswith("good-legacy-key"):
        return jsonify(ok=True)
    return jsonify(error="invalid_token"), 401


def _decorated_legacy_view():
    """Decorated once per process, as a real view is at import time."""
    global _LEGACY_VIEW
    if _LEGACY_VIEW is None:
        from app.web.rate_limits import legacy_limits

        _LEGACY_VIEW = legacy_limits(_legacy_view)
    return _LEGACY_VIEW


_LEGACY_VIEW = None


def test_legacy_limits_apply_only_to_requests_with_a_legacy_key(make_app):
    app = make_app(KEYMINT_RATELIMIT_LEGACY_KEY="2 per hour", KEYMINT_RATELIMIT_FAILED_IP="2/hour")
    legacy_view = _decorated_legacy_view()
    app.add_url_rule("/_legacy_probe", "legacy_probe", legacy_view)
    client = app.test_client()
    for _ in range(2):
        assert client.get("/_legacy_probe", headers={"X-API-Key": "good-legacy-key"}).status_code \
            == 200
    assert_rate_limited(client.get("/_legacy_probe", headers={"X-API-Key": "good-legacy-key"}))
    assert client.get("/_legacy_probe", environ_base={"REMOTE_ADDR": "10.1.1.1"},
                      headers={"X-API-Key": "another"}).status_code == 401
    assert client.get("/_legacy_probe", environ_base={"REMOTE_ADDR": "10.1.1.1"},
                      headers={"X-API-Key": "another2"}).status_code == 401
    assert_rate_limited(client.get("/_legacy_probe", environ_base={"REMOTE_ADDR": "10.1.1.1"},
                                   headers={"X-API-Key": "good-legacy-key2"}))
    for _ in range(5):  # without X-API-Key the decorator is transparent
        assert client.get("/_legacy_probe").status_code == 401
    event = audit_events(app, "ratelimit.exceeded")[0]
    assert "good-legacy-key" not in repr(vars(event))


def test_limits_are_shared_between_nodes_through_redis(make_app, storage):
    if storage["KEYMINT_RATELIMIT_STORAGE_URL"] == "memory://":
        pytest.skip("memory storage is per process by design")
    node_a = make_app(KEYMINT_RATELIMIT_CLIENT="2 per hour")
    key = Factory(node_a).key()
    assert token_request(node_a.test_client(), key.auth).status_code == 200
    assert token_request(node_a.test_client(), key.auth).status_code == 200
    node_b = make_app(KEYMINT_RATELIMIT_CLIENT="2 per hour")  # a second node, same Redis
    assert_rate_limited(token_request(node_b.test_client(), key.auth))


# --- a key's own rate limit (`rate_limit` on the key) -------------------------------------------


def test_a_keys_own_rate_limit_replaces_the_defaults_on_every_node(make_app, storage):
    """An admin sets a key's own limit through the API; it replaces the per-key defaults,
    is one budget over all OAuth endpoints, and holds across nodes sharing the storage."""
    app = make_app(KEYMINT_RATELIMIT_CLIENT="1 per hour")
    factory, client = Factory(app), app.test_client()
    team = make_team(client, factory)
    created = client.post("/api/v1/keys", headers=team["admin"].headers,
                          json={"name": "busy", "scopes": ["introspect"],
                                "rate_limit": "3 per hour"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["rate_limit"] == "3 per hour"
    auth = (body["client_id"], body["client_secret"])
    shared = storage["KEYMINT_RATELIMIT_STORAGE_URL"] != "memory://"
    other = make_app(KEYMINT_RATELIMIT_CLIENT="1 per hour").test_client() if shared else client
    token = mint(client, auth)  # 1: above the default of 1 per hour would already be spent
    assert token_request(other, auth).status_code == 200  # 2, on the other node
    assert client.post("/oauth/introspect", data={"token": token},
                       auth=auth).get_json()["active"] is True  # 3, another endpoint
    refused = token_request(other, auth)
    assert_rate_limited(refused)
    event = audit_events(app, "ratelimit.exceeded")[-1]
    assert event.details["limit"] == "key" and event.target_id == body["client_id"]
    # Cleared: the server's defaults apply again (its token budget of 1 was never spent).
    patched = client.patch(f"/api/v1/keys/{body['client_id']}", headers=team["admin"].headers,
                           json={"rate_limit": None})
    assert patched.status_code == 200 and patched.get_json()["rate_limit"] is None
    assert token_request(client, auth).status_code == 200
    assert_rate_limited(token_request(client, auth))


def test_key_rate_limit_is_validated_restricted_and_audited(client, factory):
    team = make_team(client, factory)
    admin, member = team["admin"], team["member"]
    for bad in ("lots", "0 per minute", "1000 per fortnight", "x" * 65, 5):
        response = client.post("/api/v1/keys", headers=admin.headers,
                               json={"name": "k", "scopes": [], "rate_limit": bad})
        assert response.status_code == 400, (bad, response.get_json())
        assert response.get_json()["field"] == "rate_limit" or "rate_limit" in \
            response.get_json()["error_description"]
    refused = client.post("/api/v1/keys", headers=member.headers,
                          json={"name": "k", "scopes": [], "rate_limit": "1000 per minute"})
    assert refused.status_code == 403 and refused.get_json()["field"] == "rate_limit"
    path = f"/api/v1/keys/{member.key.client_id}"
    assert client.patch(path, headers=member.headers,
                        json={"rate_limit": "5/second"}).status_code == 403
    assert client.patch(path, headers=member.headers, json={"name": "still mine"}).status_code \
        == 200
    for value in ("1000 per minute", "50/second", None):
        response = client.patch(path, headers=admin.headers, json={"rate_limit": value})
        assert response.status_code == 200 and response.get_json()["rate_limit"] == value
    changes = [e.details["rate_limit"] for e in audit_events(factory.app, "key.updated")
               if "rate_limit" in e.details]
    assert changes == [{"from": None, "to": "1000 per minute"},
                       {"from": "1000 per minute", "to": "50/second"},
                       {"from": "50/second", "to": None}]
    assert client.get(path, headers=admin.headers).get_json()["rate_limit"] is None


def test_cli_sets_and_clears_a_keys_rate_limit(app, factory):
    import json

    runner = app.test_cli_runner()
    slug = factory.workspace(owner=factory.user("rl@example.com"))
    created = runner.invoke(args=["keys", "create", "--workspace", slug, "--user",
                                  "rl@example.com", "--rate-limit", "1000 per minute", "--json"])
    assert created.exit_code == 0, created.output
    key = json.loads(created.output)
    assert key["rate_limit"] == "1000 per minute"
    assert audit_events(app, "key.created")[-1].details["rate_limit"] == "1000 per minute"
    bad = runner.invoke(args=["keys", "update", key["client_id"], "--rate-limit", "lots"])
    assert bad.exit_code != 0 and "--rate-limit must be one limit" in bad.output  # the flag
    cleared = runner.invoke(args=["keys", "update", key["client_id"], "--rate-limit", "none",
                                  "--json"])
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.output)["rate_limit"] is None
    assert audit_events(app, "key.updated")[-1].details == {
        "rate_limit": {"from": "1000 per minute", "to": None}}


def test_ratelimit_clear_lifts_a_lock_out_and_is_audited(make_app):
    app = make_app(KEYMINT_RATELIMIT_FAILED_CLIENT_IP="2 per hour",
                   KEYMINT_RATELIMIT_FAILED_IP="4 per hour", KEYMINT_RATELIMIT_CLIENT="1 per hour")
    factory, client = Factory(app), app.test_client()
    key, bystander = factory.key(), factory.key()
    office, neighbour = "192.0.2.10", "192.0.2.100"
    wrong = (key.client_id, "sk_" + "D" * 46)
    for _ in range(2):  # a client with an old secret locks itself out from its office
        assert token_request(client, wrong, ip=office).status_code == 401
    assert token_request(client, bystander.auth, ip=neighbour).status_code == 200
    for _ in range(2):
        assert token_request(client, (bystander.client_id, "sk_" + "E" * 46),
                             ip=office).status_code == 401
    assert_rate_limited(token_request(client, key.auth, ip=office))  # its pair, its IP
    assert_rate_limited(token_request(client, bystander.auth, ip=neighbour))  # its budget
    runner = app.test_cli_runner()

    result = runner.invoke(args=["ratelimit", "clear", "--client-id", key.client_id])
    assert result.exit_code == 0, result.output
    # the key's failures from the office are gone, the office's own failure count is not
    assert_rate_limited(token_request(client, key.auth, ip=office))
    result = runner.invoke(args=["ratelimit", "clear", "--ip", office])
    assert result.exit_code == 0, result.output
    assert token_request(client, key.auth, ip=office).status_code == 200
    # 192.0.2.100 shares a prefix with 192.0.2.10 but is not cleared by it
    assert_rate_limited(token_request(client, bystander.auth, ip=neighbour))
    assert runner.invoke(args=["ratelimit", "clear", "--client-id",
                               bystander.client_id]).exit_code == 0
    assert token_request(client, bystander.auth, ip=neighbour).status_code == 200

    events = audit_events(app, "ratelimit.cleared")
    assert [(e.target_type, e.target_id, e.actor_type) for e in events] == [
        ("key", key.client_id, "system"), ("ip", office, "system"),
        ("key", bystander.client_id, "system")]
    assert events[0].workspace_id is not None and events[1].workspace_id is None
    assert all(e.details["counters_cleared"] >= 1 for e in events)
    for args in (["--client-id", "nope"], ["--ip", "not-an-ip"], [],
                 ["--ip", office, "--client-id", key.client_id]):
        assert runner.invoke(args=["ratelimit", "clear", *args]).exit_code != 0


def test_unreachable_redis_falls_back_to_per_process_limits(app_config):
    from app import create_app

    app = create_app({**app_config, "KEYMINT_RATELIMIT_ENABLED": True,
                      "KEYMINT_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:1/0",
                      "KEYMINT_RATELIMIT_CLIENT": "2 per hour"})
    factory, client = Factory(app), app.test_client()
    key = factory.key()
    assert token_request(client, key.auth).status_code == 200
    assert token_request(client, key.auth).status_code == 200
    assert_rate_limited(token_request(client, key.auth))


def test_bad_limit_setting_fails_at_startup(monkeypatch):
    from app.config import ConfigError, load_from_environment

    monkeypatch.setenv("KEYMINT_RATELIMIT_IP", "lots")
    with pytest.raises(ConfigError, match="KEYMINT_RATELIMIT_IP"):
        load_from_environment()


# --- against a real server process -------------------------------------------------------------


def _server(database_url: str, storage: dict[str, str], workers: int = 1,
            **env: str) -> ServerProcess:
    return ServerProcess(database_url, workers=workers,
                         env={**storage, "KEYMINT_RATELIMIT_ENABLED": "true", **env}).start()


@pytest.mark.slow
def test_real_server_ignores_forged_forwarded_for(database_url, storage, factory):
    key = factory.key()
    server = _server(database_url, storage, KEYMINT_RATELIMIT_IP="3 per hour")
    try:
        codes = [requests.post(server.url + "/oauth/token", data=GRANT, auth=key.auth,
                               headers={"X-Forwarded-For": f"203.0.113.{n}",
                                        "X-Real-IP": f"198.51.100.{n}"}, timeout=10).status_code
                 for n in range(5)]
    finally:
        server.stop()
    assert codes == [200, 200, 200, 429, 429]


@pytest.mark.slow
def test_real_server_trusted_proxy_keys_on_the_appended_hop(database_url, storage, factory):
    key = factory.key()
    server = _server(database_url, storage, KEYMINT_RATELIMIT_IP="2 per hour",
                     KEYMINT_TRUSTED_PROXIES="1")
    try:
        def post(forwarded: str) -> requests.Response:
            return requests.post(server.url + "/oauth/token", data=GRANT, auth=key.auth,
                                 headers={"X-Forwarded-For": forwarded}, timeout=10)

        codes = [post(f"{n}.{n}.{n}.{n}, 203.0.113.7").status_code for n in range(1, 4)]
        other = post("1.1.1.1, 203.0.113.8").status_code
        limited = post("9.9.9.9, 203.0.113.7")
    finally:
        server.stop()
    assert codes == [200, 200, 429] and other == 200
    assert limited.json()["error"] == "rate_limited" and int(limited.headers["Retry-After"]) > 0


@pytest.mark.slow
def test_real_server_workers_share_limits_through_redis(database_url, redis_url, factory):
    key = factory.key()
    prefix = f"keymint-test-{uuid.uuid4().hex}"
    server = _server(database_url, {"KEYMINT_RATELIMIT_STORAGE_URL": redis_url,
                                    "KEYMINT_RATELIMIT_KEY_PREFIX": prefix}, workers=2,
                     KEYMINT_RATELIMIT_CLIENT="4 per hour")
    try:
        codes = []
        for _ in range(8):  # new connection each time: requests land on both workers
            with requests.Session() as session:
                codes.append(session.post(server.url + "/oauth/token", data=GRANT,
                                          auth=key.auth, timeout=10).status_code)
    finally:
        server.stop()
        client = _redis_client()
        for stale in client.scan_iter(match=f"*{prefix}*"):
            client.delete(stale)
    assert codes.count(200) == 4 and codes.count(429) == 4


def test_legacy_key_on_me_is_rate_limited_per_key(make_app):
    from datetime import UTC, datetime

    app = make_app(KEYMINT_RATELIMIT_LEGACY_KEY="3 per minute",
                   KEYMINT_LEGACY_SUNSET=datetime(2099, 1, 1, tzinfo=UTC))
    legacy = "legacy-static-key-for-rate-limit-test"
    made = Factory(app)
    add_legacy_key(app, made.workspace(), legacy)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/me", headers={"X-API-Key": legacy}).status_code == 200
    assert_rate_limited(client.get("/api/v1/me", headers={"X-API-Key": legacy}))
    # a bearer caller is not throttled by the legacy key's budget
    token = mint(client, made.key())
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_resource_policy_reads_with_client_credentials_are_limited_as_introspection(make_app):
    """GET /api/v1/resources with a resource server's Basic credentials spends its key's
    introspection budget; failed ones count as failed authentications; Bearer reads are not
    limited here."""
    from tests.support import ORDERS, add_resource

    app = make_app(KEYMINT_RATELIMIT_INTROSPECT="2 per hour",
                   KEYMINT_RATELIMIT_FAILED_CLIENT_IP="2 per hour")
    factory, client = Factory(app), app.test_client()
    add_resource(app, ORDERS, "orders:read")
    rs = factory.key(scopes="introspect", introspects_for=ORDERS)
    reader = factory.key(scopes="keys:read")
    for _ in range(2):
        assert client.get("/api/v1/resources", auth=rs.auth).status_code == 200
    assert_rate_limited(client.get("/api/v1/resources", auth=rs.auth))
    token = mint(client, reader)
    for _ in range(3):
        assert client.get("/api/v1/resources",
                          headers={"Authorization": f"Bearer {token}"}).status_code == 200

    other = factory.key(scopes="introspect", introspects_for=ORDERS)
    wrong = (other.client_id, "sk_" + "A" * 46)
    for _ in range(2):
        assert client.get("/api/v1/resources", auth=wrong).status_code == 401
    # refused before the secret is compared, here and at the OAuth endpoints alike
    assert_rate_limited(client.get("/api/v1/resources", auth=wrong))
    assert_rate_limited(token_request(client, wrong, ip="127.0.0.1"))  # the test client's
