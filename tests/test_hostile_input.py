"""Hostile and malformed input: an ordinary 4xx (or inactive), never a 500, never a DB error."""

from __future__ import annotations

import base64
import logging

import pytest
import requests
from sqlalchemy import event

from tests.support import mint

OAUTH_PATHS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/rotate"]
FORM = "application/x-www-form-urlencoded"
LEAK_MARKERS = ("sqlalchemy", "psycopg", "sqlite", "select ", "traceback", "insert into")


def assert_json_error(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert set(body) <= {"error", "error_description", "field"}
    text = response.get_data(as_text=True).lower()
    assert not any(marker in text for marker in LEAK_MARKERS), text
    return body


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":" + (
        password.encode() if isinstance(password, str) else password)
    return "Basic " + base64.b64encode(raw).decode("ascii")


@pytest.fixture
def key(factory):
    return factory.key(scopes="introspect keys:read keys:write")


@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_body_over_64_kib_is_413(client, key, path):
    body = "grant_type=client_credentials&pad=" + "a" * (64 * 1024)
    response = client.post(path, data=body, content_type=FORM, auth=key.auth)
    assert_json_error(response, 413)


@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_too_many_form_fields_is_rejected(client, key, path):
    body = "&".join(f"f{n}=1" for n in range(500))
    response = client.post(path, data=body, content_type=FORM, auth=key.auth)
    body = assert_json_error(response, 400, 413)
    assert body["error"] in ("invalid_request", "request_entity_too_large")


@pytest.mark.parametrize("path", OAUTH_PATHS)
@pytest.mark.parametrize("content_type, body", [
    ("application/json", '{"grant_type": "client_credentials"}'),
    ("text/plain", "grant_type=client_credentials"),
    ("multipart/form-data; boundary=x",
     '--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--x--'),
])
def test_non_form_body_on_oauth_endpoints_is_invalid_request(client, key, path, content_type,
                                                              body):
    response = client.post(path, data=body, content_type=content_type, auth=key.auth)
    assert assert_json_error(response, 400)["error"] == "invalid_request"


@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_get_on_oauth_endpoints_is_405(client, key, path, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.get(f"{path}?client_id={key.client_id}&client_secret={key.secret}")
    assert_json_error(response, 405)
    assert key.secret not in caplog.text


@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_credentials_in_the_query_string_are_refused(client, key, path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    response = client.post(f"{path}?client_id={key.client_id}&client_secret={key.secret}",
                           data={"grant_type": "client_credentials", "token": "x"})
    assert assert_json_error(response, 400)["error"] == "invalid_request"
    captured = capsys.readouterr()
    assert key.secret not in caplog.text + captured.err + captured.out


NASTY = [
    "\x00", "key_\x00", "\x00" * 50, "' OR '1'='1", "key_'; DROP TABLE api_keys; --",
    "key_" + "A" * 23 + "'", "%00", "\u202e\u0000", "😀" * 30, "key_" + "\x7f" * 24,
    "a" * 30000,
]


def test_64_kib_client_id_is_413_in_the_body_and_401_in_the_header(client):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                 "client_id": "k" * 65536, "client_secret": "x"})
    assert_json_error(response, 413)
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": basic("k" * 65536, "x")})
    assert assert_json_error(response, 401)["error"] == "invalid_client"


@pytest.mark.parametrize("value", NASTY, ids=range(len(NASTY)))
def test_nasty_client_ids_and_secrets_are_plain_401(client, key, value):
    for form in ({"client_id": value, "client_secret": key.secret},
                 {"client_id": key.client_id, "client_secret": value},
                 {"client_id": value, "client_secret": value}):
        response = client.post("/oauth/token", data={"grant_type": "client_credentials", **form})
        assert assert_json_error(response, 401)["error"] == "invalid_client"


@pytest.mark.parametrize("value", NASTY[:-1], ids=range(len(NASTY) - 1))
def test_nasty_values_in_other_parameters(client, key, value):
    token_response = client.post("/oauth/token", data={"grant_type": value}, auth=key.auth)
    assert_json_error(token_response, 400)
    scope_response = client.post("/oauth/token", auth=key.auth,
                                 data={"grant_type": "client_credentials", "scope": value})
    assert_json_error(scope_response, 400)
    introspected = client.post("/oauth/introspect", data={"token": value}, auth=key.auth)
    assert introspected.status_code == 200 and introspected.get_json() == {"active": False}
    revoked = client.post("/oauth/revoke", data={"token": value, "token_type_hint": value},
                          auth=key.auth)
    assert revoked.status_code == 200
    rotated = client.post("/oauth/rotate", data={"token": value}, auth=key.auth)
    assert_json_error(rotated, 400)


def test_nasty_client_id_is_not_written_to_the_audit_trail(app, client, key):
    from app.extensions import db
    from app.models import AuditEvent

    # A secret pasted into the client_id field is the classic way secrets end up in logs.
    client.post("/oauth/token", data={"grant_type": "client_credentials",
                                      "client_id": key.secret, "client_secret": "x"})
    client.post("/oauth/token", data={"grant_type": "client_credentials",
                                      "client_id": "a\x00b", "client_secret": "x"},
                headers={"User-Agent": "evil\x00agent"})
    with app.app_context():
        rows = db.session.query(AuditEvent).filter_by(action="client.auth_failed").all()
        assert [row.details["reason"] for row in rows] == ["malformed_client_id"] * 2
        assert all(row.target_id is None for row in rows)
        assert key.secret not in repr([vars(row) for row in rows])


def test_invalid_utf8_in_the_form_body(client, key):
    body = b"grant_type=client_credentials&client_id=\xff\xfe%ED%A0%80&client_secret=%ff%fe%c3%28"
    # Werkzeug drops a form body that is not UTF-8 as a whole: no grant_type, no credentials.
    response = client.post("/oauth/token", data=body, content_type=FORM)
    assert assert_json_error(response, 400, 401)["error"] in ("unsupported_grant_type",
                                                              "invalid_request", "invalid_client")
    percent = b"grant_type=client_credentials&client_id=%ff%fe%ED%A0%80&client_secret=%c3%28"
    response = client.post("/oauth/token", data=percent, content_type=FORM)
    assert assert_json_error(response, 401)["error"] == "invalid_client"
    introspected = client.post("/oauth/introspect", data=b"token=%ff%fe%00%C3%28",
                               content_type=FORM, auth=key.auth)
    assert introspected.get_json() == {"active": False}
    raw = client.post("/oauth/introspect", data=b"token=\xff\x00", content_type=FORM,
                      auth=key.auth)
    assert assert_json_error(raw, 400)["error"] == "invalid_request"


@pytest.mark.parametrize("header", [
    "Basic", "Basic ", "Basic !!!!", "Basic " + "A" * 60000, "Basic =", "Basic Og==",
    basic("ключ", "секрет"), basic(b"\xff\xfe", b"\xc3\x28"), basic("key_\x00", "sk_\x00"),
    basic("%00%ff", "%ZZ"), basic("' OR 1=1 --", "x"), "Basic " + "é" * 10, "basic \x00\x01",
    "Bearer at_nonsense", "Digest username=x",
])
def test_malformed_basic_headers_are_401_or_400(client, header):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": header})
    body = assert_json_error(response, 400, 401)
    assert body["error"] in ("invalid_client", "invalid_request")
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="keymint"'


def test_bad_checksum_token_is_inactive_without_a_database_lookup(app, client, key, factory):
    from app.extensions import db

    token = mint(client, key)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    statements: list[str] = []

    def remember(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        response = client.post("/oauth/introspect", data={"token": tampered}, auth=key.auth)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert response.get_json() == {"active": False}
    assert not any("access_tokens" in s or "legacy_keys" in s for s in statements), statements
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"})
    assert me.status_code == 401


@pytest.mark.parametrize("body, content_type, status", [
    ("[1, 2]", "application/json", 400), ("null", "application/json", 400),
    ("1", "application/json", 400), ('"text"', "application/json", 400),
    ("{bad json", "application/json", 400), (b'{"name": "\xff"}', "application/json", 400),
    ('{"name": "x"}', "text/plain", 415), ("name=x", FORM, 415),
])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_api_body_must_be_a_json_object(client, key, factory, body, content_type, status,
                                        method):
    token = mint(client, key)
    path = "/api/v1/keys" if method == "POST" else f"/api/v1/keys/{key.client_id}"
    response = client.open(path, method=method, data=body, content_type=content_type,
                           headers={"Authorization": f"Bearer {token}"})
    expected = "invalid_request" if status == 400 else "unsupported_media_type"
    assert assert_json_error(response, status)["error"] == expected


def test_api_body_over_64_kib_is_413(client):
    response = client.post("/api/v1/keys", data='{"name": "' + "a" * 70000 + '"}',
                           content_type="application/json")
    assert_json_error(response, 413)


def test_unknown_paths_and_methods_answer_json(client):
    assert_json_error(client.get("/nope/../../etc/passwd"), 404)
    assert_json_error(client.delete("/oauth/token"), 405)
    assert_json_error(client.get("/api/v1/\x00"), 404)


@pytest.mark.slow
def test_real_server_rejects_oversized_and_chunked_bodies(live_server, factory):
    key = factory.key()
    url = live_server.url + "/oauth/token"
    big = requests.post(url, data={"grant_type": "client_credentials", "pad": "a" * 70000},
                        auth=key.auth, timeout=10)
    assert big.status_code == 413 and big.json()["error"]

    def chunks():
        yield b"grant_type=client_credentials&pad="
        for _ in range(80):
            yield b"a" * 1024

    chunked = requests.post(url, data=chunks(), auth=key.auth, timeout=10,
                            headers={"Content-Type": FORM})
    assert chunked.status_code == 413 and chunked.json()["error"]
    small = requests.post(url, data=iter([b"grant_type=", b"client_credentials"]),
                          auth=key.auth, timeout=10, headers={"Content-Type": FORM})
    assert small.status_code == 200, small.text
    long_header = requests.post(url, data={"grant_type": "client_credentials"}, timeout=10,
                                headers={"Authorization": "Basic " + "A" * 20000})
    assert long_header.status_code == 431  # the server's own answer, before keymint runs
    ok = requests.post(url, data={"grant_type": "client_credentials"}, auth=key.auth, timeout=10)
    assert ok.status_code == 200
    assert key.secret not in live_server.output()
