"""BearerASGIMiddleware for any ASGI application (HTTP and WebSocket)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from keymint_resource.errors import TokenError
from keymint_resource.guard import Guard
from keymint_resource.metadata import ProtectedResource
from keymint_resource.verifier import TokenVerifier

SCOPE_KEY = "keymint.token"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# RFC 6455 §7.4.1: 1008 "policy violation" is how a WebSocket refuses a connection.
WS_POLICY_VIOLATION = 1008


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class BearerASGIMiddleware:
    """Like keymint_resource.wsgi.BearerMiddleware; the decision is in `scope["keymint.token"]`.

    The check itself may call keymint (introspection, JWKS), so it runs in a worker thread
    and never blocks the event loop.
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, *, scopes: Iterable[str] = (),
                 exempt: Iterable[str] = (), metadata: ProtectedResource | None = None,
                 realm: str | None = None,
                 scopes_for: Callable[[str, str], Iterable[str]] | None = None) -> None:
        self.app = app
        self.guard = Guard(verifier, tuple(scopes), scopes_for, tuple(exempt), metadata, realm)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        guard = self.guard
        method = scope.get("method", "GET").upper() if scope["type"] == "http" else "GET"
        path = scope.get("path", "/") or "/"
        if scope["type"] == "http" and guard.is_metadata(method, path):
            assert guard.metadata is not None
            await _respond(send, 200, guard.metadata.headers(),
                           b"" if method == "HEAD" else guard.metadata.body())
            return
        if (scope["type"] == "http" and method == "OPTIONS") or guard.is_exempt(path):
            await self.app(scope, receive, send)
            return
        try:
            scope[SCOPE_KEY] = await asyncio.to_thread(
                guard.authorize, _header(scope, b"authorization"), method,
                scope.get("root_path", "") + path)
        except TokenError as error:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
                return
            status, headers, body = guard.refusal(error)
            await _respond(send, status, headers, body)
            return
        await self.app(scope, receive, send)


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
