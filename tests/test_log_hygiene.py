"""No secret, token, digest or credential header in any log line or audit row."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from app import credentials
from app.runtime.logs import REDACTED, redact
from tests.support import ServerProcess

REQUIRED_REQUEST_FIELDS = {"time", "level", "logger", "message", "request_id", "method", "path",
                           "status", "duration_ms", "client_ip"}


def forbidden_strings(values: list[str]) -> list[str]:
    """The values, their digests, and how they look inside a Basic header."""
    found = []
    for value in values:
        found += [value, credentials.digest(value), value[3:]]
    return found


def assert_clean(text: str, values: list[str]) -> None:
    for needle in forbidden_strings(values):
        assert needle not in text, f"leaked {needle[:8]}… in logs"


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """Everything keymint and its libraries log, SQL with parameters included."""
    from app.runtime import logs

    root = logging.getLogger()
    old_root = root.level
    handler = logs.configure("debug")
    old_handler = handler.level
    handler.setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    sql = logging.getLogger("sqlalchemy.engine")
    old_sql = sql.level
    sql.setLevel(logging.INFO)
    yield
    sql.setLevel(old_sql)
    root.setLevel(old_root)
    handler.setLevel(old_handler)


def drive_every_endpoint(post, get, key, other) -> list[str]:
    """Use every endpoint with real credentials, right and wrong; returns what must not leak."""
    basic = base64.b64encode(f"{key.client_id}:{key.secret}".encode()).decode()
    grant = {"grant_type": "client_credentials"}
    first = post("/oauth/token", data=grant, auth=key.auth).json()["access_token"]
    second = post("/oauth/token", data={**grant, "client_id": key.client_id,
                                        "client_secret": key.secret}).json()["access_token"]
    post("/oauth/introspect", data={"token": first}, auth=key.auth)
    post("/oauth/introspect", data={"token": first}, auth=(other.client_id, other.secret))
    rotated = post("/oauth/rotate", data={"token": first}, auth=key.auth).json()["access_token"]
    post("/oauth/rotate", data={"token": first}, auth=key.auth)  # reuse: lineage revoked
    post("/oauth/revoke", data={"token": second}, auth=key.auth)
    get("/api/v1/me", headers={"Authorization": f"Bearer {rotated}"})
    get("/api/v1/me", headers={"Authorization": f"Bearer {second}"})
    get("/api/v1/me", headers={"X-API-Key": key.secret})
    # credentials where they do not belong
    post("/oauth/token", data={**grant, "client_id": key.secret, "client_secret": key.secret})
    post(f"/oauth/token?client_secret={key.secret}&token={rotated}", data=grant, auth=key.auth)
    get(f"/oauth/token?client_id={key.client_id}&client_secret={key.secret}")
    get(f"/api/v1/keys/{key.secret}", headers={"Authorization": f"Basic {basic}"})
    post("/oauth/token", data=grant, auth=(key.client_id, key.secret[:-1] + "x"))
    post("/oauth/introspect", data={"token": rotated + "x"}, auth=key.auth)
    for path in ("/healthz", "/readyz", "/metrics", "/.well-known/oauth-authorization-server"):
        get(path)
    return [key.secret, other.secret, first, second, rotated, basic]


def audit_text(app) -> str:
    from app.extensions import db
    from app.models import AuditEvent

    with app.app_context():
        rows = db.session.query(AuditEvent).all()
        assert rows
        return "\n".join(repr({c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns})
                         for row in rows)


def test_flask_app_logs_and_audit_hold_no_secret(app, client, factory, capsys, caplog,
                                                 debug_logging):
    caplog.set_level(logging.DEBUG)
    key = factory.key(scopes="introspect keys:read")
    other = factory.key(scopes="keys:read")

    class Wrapped:
        def __init__(self, response):
            self.response = response

        def json(self):
            return self.response.get_json()

    def post(path, **kwargs):
        return Wrapped(client.post(path, **kwargs))

    def get(path, **kwargs):
        return Wrapped(client.get(path, **kwargs))

    secrets = drive_every_endpoint(post, get, key, other)
    captured = capsys.readouterr()
    assert_clean(captured.err + captured.out, secrets)
    assert_clean(caplog.text, secrets)
    assert_clean(audit_text(app), secrets)
    request_lines = [json.loads(line) for line in captured.err.splitlines()
                     if line.startswith("{") and '"keymint.request"' in line]
    assert len(request_lines) >= 15
    for line in request_lines:
        assert set(line) >= REQUIRED_REQUEST_FIELDS, line
        assert "?" not in line["path"]


@pytest.mark.slow
def test_real_server_output_holds_no_secret(app, database_url, factory):
    key = factory.key(scopes="introspect keys:read")
    other = factory.key(scopes="keys:read")
    server = ServerProcess(database_url, env={"KEYMINT_LOG_LEVEL": "debug"}).start()
    session = requests.Session()
    try:
        secrets = drive_every_endpoint(
            lambda path, **kw: session.post(server.url + path, timeout=10, **kw),
            lambda path, **kw: session.get(server.url + path, timeout=10, **kw), key, other)
    finally:
        server.stop()
    output = server.output()
    assert_clean(output, secrets)
    assert_clean(audit_text(app), secrets)
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, Granian's too, is JSON
    assert any(entry["logger"].startswith("_granian") for entry in parsed)
    requests_logged = [entry for entry in parsed if entry["logger"] == "keymint.request"]
    assert len(requests_logged) >= 15
    assert all(set(entry) >= REQUIRED_REQUEST_FIELDS for entry in requests_logged)


def test_redactor_catches_what_might_slip_through():
    secret, token = credentials.new_secret(), credentials.new_access_token()
    digest = credentials.digest(secret)
    samples = [
        f"presented {secret}", f"token={token}", f"digest {digest}",
        "Authorization: Basic a2V5X3h4eDpza194eHg=", "{'Authorization': 'Bearer abc.def'}",
        "HTTP_X_API_KEY=legacy-secret-value", "x-api-key: legacy-secret-value",
        f"client_secret={secret[:20]}", "headers: {'X-API-Key': 'legacy-secret-value'}",
        f"last_token_{token}",  # after "_": the rule the audit trail's User-Agent shares
    ]
    for sample in samples:
        cleaned = redact(sample)
        assert REDACTED in cleaned, sample
        for needle in (secret, token, digest, "legacy-secret-value", "a2V5X3h4eDpza194eHg",
                       "abc.def", secret[:20]):
            assert needle not in cleaned
    assert redact("request abc123 took 5 ms") == "request abc123 took 5 ms"


def test_webhook_signing_secrets_are_redacted_whole():
    from app.services import webhooks

    for _ in range(20):  # base64: "+", "/" and "=" turn up in some, and must go too
        secret = webhooks.new_secret()
        for sample in (f"secret: {secret}", f"{{'secret': '{secret}'}}", f"k={secret}&x=1",
                       f"rotated to {secret[:14]}"):
            cleaned = redact(sample)
            assert REDACTED in cleaned, sample
            assert secret[6:14] not in cleaned, sample
        assert redact(f"secret: {secret}.") == f"secret: {REDACTED}."
    assert credentials.redact_credentials(f"agent/1 {secret}") == f"agent/1 {REDACTED}"
    # Too short to be a secret, or part of a longer word: left alone.
    assert redact("whsec_abc and nowhsec_abcdefghijkl") == "whsec_abc and nowhsec_abcdefghijkl"


def test_exception_tracebacks_are_redacted():
    from app.runtime.logs import JsonFormatter

    secret = credentials.new_secret()
    try:
        raise ValueError(f"bad secret {secret}")
    except ValueError:
        record = logging.LogRecord("keymint.test", logging.ERROR, __file__, 1, "failed %s",
                                   (secret,), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert secret not in line and REDACTED in line
    assert json.loads(line)["level"] == "error"


_FRAGMENTS = ["sk_", "at_", "SK_", "whsec_", "WHSEC_", "+/=", "Basic ", "bEaReR ",
              "authorization:", "X-API-KEY=",
              "x_api_key:", "client_secret=", "Access_Token:", "refresh_token=", "password:",
              "HTTP_AUTHORIZATION=", "'", '"', " ", ":", "=", "0123456789abcdef" * 4,
              "0123456789ABCDEF" * 2, "abc", "x-api-key=", "API_Key:",
              "Zz9", "\u0130", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=12))
def test_redact_shortcut_never_skips_a_match(parts):
    """The literal pre-check in redact() gives exactly what running every pattern gives."""
    from app.runtime.logs import _PATTERNS

    text = "".join(parts)
    expected = text
    for pattern in _PATTERNS:
        expected = pattern.sub(REDACTED, expected)
    assert redact(text) == expected
