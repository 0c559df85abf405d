"""Per-request telemetry: one structured access-log line and the request metrics."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from app import credentials
from app.runtime import metrics
from app.services.audit import USER_AGENT_MAX_LEN
from app.web.context import client_ip, request_id

log = logging.getLogger("keymint.request")

# Probes hit these every few seconds; their lines are debug-level noise.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_SOURCE = __file__
_CREDENTIAL_PREFIXES = (credentials.SECRET_PREFIX, credentials.TOKEN_PREFIX,
                        credentials.LOGIN_LINK_PREFIX, credentials.CONSOLE_SESSION_PREFIX,
                        credentials.WEBHOOK_SECRET_PREFIX)
_CLIENT_ID = "keymint_client_id"
_ERROR_CODE = "keymint_error_code"


def note_client(client_id: str) -> None:
    """The request authenticated as this key (client authentication or a Bearer token)."""
    setattr(g, _CLIENT_ID, client_id)


def note_error(code: object) -> None:
    """The OAuth or API error code of the answer being built (`error` of its JSON body)."""
    if isinstance(code, str):
        setattr(g, _ERROR_CODE, code)


def endpoint_label() -> str:
    """The route template (bounded cardinality), never the raw path a client made up."""
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def record(endpoint: str, method: str, path: str, status: int, elapsed: float, *,
           request_id: str, client_ip: str | None, client_id: str | None,
           error_code: str | None, user_agent: str | None) -> None:
    """Count the request and write its one JSON log line (also for answers given outside
    Flask's request handling: app/oauth/fast_introspection.py)."""
    metrics.count_request(endpoint, method, status, elapsed)
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if status >= 500:
        level = logging.ERROR
    if not log.isEnabledFor(level):
        return
    if any(prefix in path for prefix in _CREDENTIAL_PREFIXES):
        # A credential in the path itself (a console sign-in link): the record's fields stay
        # clean too, not only the JSON line keymint's formatter redacts.
        path = credentials.redact_credentials(path)
    # `path` only: a query string may carry credentials a client should not send.
    # The record is made here rather than by log.log(): that would walk the stack for the
    # caller's file and line (findCaller, ~12 % of the line's cost), which no line prints.
    log.handle(log.makeRecord(
        log.name, level, _SOURCE, 0, "%s %s %s", (method, path, status), None,
        extra={"request_id": request_id, "method": method, "path": path,
               "status": status, "duration_ms": round(elapsed * 1000, 3),
               "client_ip": client_ip, "client_id": client_id,
               "error_code": error_code if status >= 400 else None,
               # the client chooses it: as long as the audit trail keeps it
               "user_agent": user_agent[:USER_AGENT_MAX_LEN] if user_agent else None}))


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_clock() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        state = g._get_current_object().__dict__  # one context lookup for every g value
        started = state.get("request_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        req = request._get_current_object()  # one context lookup instead of one per field
        record(endpoint_label(), req.method, req.path, response.status_code, elapsed,
               request_id=request_id(), client_ip=client_ip(),
               client_id=state.get(_CLIENT_ID), error_code=state.get(_ERROR_CODE),
               user_agent=req.environ.get("HTTP_USER_AGENT"))
        return response
