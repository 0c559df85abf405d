"""`GET /api/v1/me` with a Bearer token that passes, answered below Flask (a fast path).

The Bearer check and the answer are the view's own (`tokens.lookup` with the workspace, one
statement outside any transaction; `TokenInfo.is_active`; `resources.for_own_api`;
`me.me_answer`), as are the headers, metrics and request log line (web.fast_path). Anything
else — another method, a query string, an `X-API-Key` (the legacy answer), no Bearer token or
one that does not pass, a database error — goes to Flask untouched, which answers it as
always (401/403 challenges, legacy headers and limits, 503).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app.api.me import me_answer
from app.clock import utcnow
from app.services import resources as resource_service
from app.services import tokens as token_service
from app.web.fast_path import FastPath, hand_over, taken

PATH = "/api/v1/me"
_BEARER = "Bearer "


class FastMe(FastPath):
    rule = PATH

    def handles(self, environ: dict[str, Any]) -> bool:
        return environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET"

    def answer(self, environ: dict[str, Any], started: float,
               start_response: Callable[..., Any]) -> list[bytes] | None:
        header = environ.get("HTTP_AUTHORIZATION") or ""
        if (environ.get("QUERY_STRING") or "HTTP_X_API_KEY" in environ
                or not header.startswith(_BEARER)):
            return None
        token = header[len(_BEARER):]
        if not token_service.is_presented_token(token):
            return None
        try:
            info = token_service.lookup(self.engine(), token, with_workspace=True)
        except SQLAlchemyError:  # the full path maps it (503, pool timeout, ...)
            return None
        hand_over(environ, (token,), info)
        if (info is None or not info.is_active(utcnow()) or not resource_service.for_own_api(
                info.audience, self.app.config.get("KEYMINT_ISSUER") or None)):
            return None
        taken(environ)  # answered here: nothing to hand over
        # jsonify's compact form with its trailing newline, as the view answers
        payload = (self.compact().encode(me_answer(info)) + "\n").encode()
        return self.respond(environ, start_response, started, payload, info.client_id)


def init_app(app: Flask) -> None:
    app.wsgi_app = FastMe(app, app.wsgi_app)  # type: ignore[method-assign]
