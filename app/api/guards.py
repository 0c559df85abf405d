"""Request-body guards for the JSON management API: a body is one JSON object or nothing."""

from __future__ import annotations

from flask import Flask, Response, request

from app.api.errors import error_response

API_PREFIX = "/api/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", "").lower()


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
    app.before_request(check_json_body)
