"""Request-body guard: bounded bodies, chunked ones included (JSON bodies: app/web/validation)."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

TOO_LARGE_FLAG = "keymint.body_too_large"


class ChunkedBodyLimit:
    """WSGI middleware: a chunked body (no Content-Length) is held to MAX_CONTENT_LENGTH too.

    Werkzeug enforces the limit on Content-Length, but truncates an over-long chunked body
    silently (seen under gunicorn); here it is read up to the limit + 1 byte, an over-long one is
    flagged so the app answers 413 (with its usual headers and request log line).
    """

    def __init__(self, wsgi_app: Any, limit: int) -> None:
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(self.limit + 1)
            if len(body) > self.limit:
                environ[TOO_LARGE_FLAG] = True
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.wsgi_app(environ, start_response)


def check_body_size() -> None:
    """413 before any other check: an oversized body is refused whoever sends it."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.environ.get(TOO_LARGE_FLAG) or (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.before_request(check_body_size)
