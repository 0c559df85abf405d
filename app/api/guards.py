"""Request-body guards: bounded bodies (also chunked ones) and JSON-object API bodies."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.api.errors import error_response

TOO_LARGE_FLAG = "keymint.body_too_large"


class ChunkedBodyLimit:
    """WSGI middleware: a chunked body (no Content-Length) is held to MAX_CONTENT_LENGTH too.

    Werkzeug enforces the limit on Content-Length, but truncates an over-long chunked body
    silently under gunicorn; here it is read up to the limit + 1 byte, and an over-long one is
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
    if request.environ.get(TOO_LARGE_FLAG):
        raise RequestEntityTooLarge()

API_PREFIX = "/api/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body() -> bool:
    return bool(request.content_length)


def check_json_body() -> Response | None:
    """400 for a management-API body that is not a JSON object; views can trust get_json()."""
    if not request.path.startswith(API_PREFIX) or request.method not in BODY_METHODS:
        return None
    if not _has_body():
        return None
    if not request.is_json:
        return error_response(400, "invalid_request", "The request body must be a JSON object "
                              "sent as application/json.")
    body = request.get_json(silent=True)  # cached: the view's get_json() reuses it
    if not isinstance(body, dict):
        return error_response(400, "invalid_request", "The request body must be a JSON object.")
    return None


def init_app(app: Flask) -> None:
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.before_request(check_body_size)
    app.before_request(check_json_body)
