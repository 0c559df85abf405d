"""`keymint serve`'s --bind forms, as app/runtime/server.py hands them to Granian."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runtime.server import parse_bind
from tests.support import ServerProcess

ANY = "0.0.0.0"  # noqa: S104 (parsed, never bound)


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:8000", {"address": "127.0.0.1", "port": 8000}),
    (f"{ANY}:9000", {"address": ANY, "port": 9000}),
    ("localhost", {"address": "localhost", "port": 8000}),
    (":8080", {"address": ANY, "port": 8080}),
    ("[::1]:8443", {"address": "::1", "port": 8443}),
    ("[::]", {"address": "::", "port": 8000}),
    ("unix:/run/keymint.sock", {"uds": Path("/run/keymint.sock")}),
])
def test_bind_forms(bind, expected):
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["127.0.0.1:http", "[::1]:x", "[::1"])
def test_bad_bind_is_an_error(bind):
    with pytest.raises(ValueError):
        parse_bind(bind)


@pytest.mark.slow
def test_server_environment_never_reads_as_request_headers(database_url, factory):
    """Granian seeds each request's WSGI environ from the worker's environment; a variable
    named like a header must not authenticate a request that sent no credentials."""
    import base64

    import requests

    key = factory.key(scopes="introspect")
    basic = base64.b64encode(f"{key.client_id}:{key.secret}".encode()).decode()
    server = ServerProcess(database_url, env={"HTTP_AUTHORIZATION": f"Basic {basic}",
                                              "REMOTE_USER": "admin"}).start()
    try:
        grant = {"grant_type": "client_credentials"}
        anonymous = requests.post(server.url + "/oauth/token", data=grant, timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"] == "invalid_client"
        own = requests.post(server.url + "/oauth/token", data=grant, auth=key.auth, timeout=10)
        assert own.status_code == 200, own.text
    finally:
        server.stop()
