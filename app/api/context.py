"""Per-request facts shared by every view: request id, client IP, the acting credential."""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, request

from app.services.audit import Actor

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id() -> str:
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(12)
        g.request_id = rid
    return rid


def client_ip() -> str | None:
    return request.remote_addr


def request_actor(actor_type: str, actor_id: str | None = None,
                  key: str | None = None) -> Actor:
    return Actor(type=actor_type, id=actor_id, key=key, ip=client_ip(),
                 user_agent=request.headers.get("User-Agent"), request_id=request_id())


def init_app(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _common_headers(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        if response.headers.get("Cache-Control") == "no-store":
            response.headers.setdefault("Pragma", "no-cache")
        return response


def issuer() -> str:
    """KEYMINT_ISSUER, else the URL this request reached (scheme from a trusted proxy)."""
    from flask import current_app

    return current_app.config.get("KEYMINT_ISSUER") or request.url_root.rstrip("/")
