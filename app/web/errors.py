"""JSON error responses for the whole app: never an HTML page, never a stack trace.

No handler rolls back: the request boundary (app/web/boundary.py) does, for every error answer.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.services.errors import Conflict, DomainError, Forbidden, Gone, InvalidInput, NotFound
from app.web.boundary import unavailable_response
from app.web.telemetry import note_error

log = logging.getLogger("keymint.errors")

DOMAIN_STATUS = {InvalidInput: 400, NotFound: 404, Conflict: 409, Forbidden: 403, Gone: 410}


def error_response(status: int, error: str, description: str, **extra: object) -> Response:
    note_error(error)
    response = jsonify({"error": error, "error_description": description, **extra})
    response.status_code = status
    return response


def domain_error_response(exc: DomainError) -> Response:
    status = next((code for cls, code in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    extra = {"field": exc.field} if exc.field else {}
    return error_response(status, exc.code, exc.message, **extra)


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        return domain_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.response is not None:
            return exc.response
        body = getattr(exc, "body", None)
        if isinstance(body, str):  # Authlib's resource-protector errors: RFC 6750 JSON + headers
            return Response(body, status=exc.code, headers=exc.get_headers(),
                            mimetype="application/json")
        name = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, name, exc.description or exc.name)
        for header, value in exc.get_headers():
            if header.lower() not in ("content-type",):
                response.headers[header] = value
        return response

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError) -> Response:
        return error_response(409, "conflict", "The change conflicts with the current state; "
                              "reload and retry.")

    @app.errorhandler(DBAPIError)
    def _database(exc: DBAPIError) -> Response:
        log.warning("database error: %s", type(exc.orig).__name__ if exc.orig else "unknown")
        return unavailable_response()

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(exc: PoolTimeout) -> Response:
        # Every pooled connection busy for pool_timeout: overloaded, not broken — retry later.
        log.warning("database connection pool exhausted")
        return unavailable_response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "server_error", "An unexpected error occurred.")
