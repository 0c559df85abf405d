"""BearerMiddleware for any WSGI application: checks the token before the app sees the request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from keymint_resource.errors import TokenError
from keymint_resource.guard import Guard
from keymint_resource.metadata import ProtectedResource
from keymint_resource.verifier import TokenVerifier

ENVIRON_KEY = "keymint.token"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class BearerMiddleware:
    """Wraps `app`: every request outside `exempt` needs a valid token with `scopes`; the
    decision (an AccessToken) is in `environ["keymint.token"]`. Refusals are RFC 6750 answers."""

    def __init__(self, app: WSGIApp, verifier: TokenVerifier, *, scopes: Iterable[str] = (),
                 exempt: Iterable[str] = (), metadata: ProtectedResource | None = None,
                 realm: str | None = None,
                 scopes_for: Callable[[str, str], Iterable[str]] | None = None) -> None:
        self.app = app
        self.guard = Guard(verifier, tuple(scopes), scopes_for, tuple(exempt), metadata, realm)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        guard = self.guard
        if guard.is_metadata(method, path):
            assert guard.metadata is not None
            body = guard.metadata.body()
            start_response(_status(200), guard.metadata.headers())
            return [b"" if method == "HEAD" else body]
        if method == "OPTIONS" or guard.is_exempt(path):
            # CORS preflights carry no credentials by design.
            return self.app(environ, start_response)
        try:
            environ[ENVIRON_KEY] = guard.authorize(environ.get("HTTP_AUTHORIZATION"), method,
                                                   environ.get("SCRIPT_NAME", "") + path)
        except TokenError as error:
            status, headers, body = guard.refusal(error)
            start_response(_status(status), [*headers, ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)
