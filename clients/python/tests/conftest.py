"""Fixtures of the keymint-resource tests: a fake keymint on loopback (real HTTP) and a clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

NOW = 1_800_000_000  # the fake clock's start, epoch seconds


class Clock:
    """The verifier's clock, moved by the tests (no sleeping, no timed assertions)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeKeymint:
    """What a TokenVerifier sees of keymint: metadata, a JWKS and an introspection endpoint."""

    url: str = ""
    keys: list[Any] = field(default_factory=list)        # published (public parts)
    jwks_status: int = 200
    jwks_cache_control: str | None = "public, max-age=300"
    introspection_status: int = 200
    introspect: Callable[[dict[str, str]], dict[str, Any]] = lambda form: {"active": False}
    hits: dict[str, int] = field(default_factory=dict)
    forms: list[dict[str, str]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.url, "token_endpoint": f"{self.url}/oauth/token",
                "introspection_endpoint": f"{self.url}/oauth/introspect",
                "jwks_uri": f"{self.url}/.well-known/jwks.json"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.keys]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        claims = {"iss": self.url, "sub": "42", "aud": self.url, "client_id": "key_client",
                  "scope": "orders:read", "jti": "tok_abc", "iat": NOW, "exp": NOW + 300,
                  "workspace_id": "7"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, key: Any, header: dict[str, Any] | None = None, **claims: Any) -> str:
        alg = "EdDSA" if isinstance(key, OKPKey) else "ES256"
        head = {"alg": alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, self.claims(**claims), key, algorithms=[head["alg"]])


def make_key(kind: str = "EC", kid: str = "k1") -> Any:
    if kind == "EC":
        return ECKey.generate_key("P-256", parameters={"kid": kid})
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


def _handler(state: FakeKeymint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            if self.path == "/.well-known/oauth-authorization-server":
                self._send(200, state.metadata())
            elif self.path == "/.well-known/jwks.json":
                headers = ({"Cache-Control": state.jwks_cache_control}
                           if state.jwks_cache_control else {})
                if state.jwks_status != 200:
                    self._send(state.jwks_status, {"error": "down"})
                else:
                    self._send(200, state.jwks(), headers)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            state.forms.append(form)
            state.auth.append(self.headers.get("Authorization"))
            if self.path != "/oauth/introspect":
                self._send(404, {"error": "not_found"})
            elif state.introspection_status != 200:
                self._send(state.introspection_status, {"error": "server_error"})
            else:
                self._send(200, state.introspect(form))

    return Handler


@pytest.fixture
def fake_keymint() -> Iterator[FakeKeymint]:
    state = FakeKeymint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def clock() -> Clock:
    return Clock()
