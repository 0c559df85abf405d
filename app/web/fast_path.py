"""The shared part of answers given below Flask: engine, JSON, headers, metrics, log line.

A fast path (app/oauth/fast_introspection.py, app/api/fast_me.py) is WSGI middleware in
front of the Flask app that answers one common, read-only request itself and hands every
other request, untouched, to Flask (the full path). What it answers must be what the full
path would answer, byte for byte; this class gives each the same headers, request id,
metrics and request log line as `context._common_headers` and `telemetry` give Flask's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.engine import Engine

from app.extensions import db
from app.web import telemetry
from app.web.context import no_store_headers, request_id_from

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# What a fast path read before handing a request over: the full path takes it instead of
# reading again, so a request costs one statement whichever path answers it. A WSGI server
# only puts headers under HTTP_*, so no client can set this key.
_PREFETCHED = "keymint.prefetched"


def hand_over(environ: dict[str, Any], what: tuple[Any, ...], found: Any) -> None:
    """Leave `found` (read for the request facts `what`) to the full path."""
    environ[_PREFETCHED] = (what, found)


def taken(environ: dict[str, Any]) -> None:
    """The fast path answered itself: drop what it would have handed over."""
    environ.pop(_PREFETCHED, None)


def prefetched(environ: dict[str, Any], what: tuple[Any, ...]) -> tuple[bool, Any]:
    """(True, what the fast path read) when it read for exactly these facts, else
    (False, None). Taken once."""
    held = environ.pop(_PREFETCHED, None)
    if held is not None and held[0] == what:
        return True, held[1]
    return False, None


class FastPath:
    """Base of the fast-path middlewares: `handles(environ)` picks the requests to try,
    `answer(...)` returns the body it answered, or None to hand the request over."""

    setting = "KEYMINT_FAST_PATHS"  # the kill switch of the fast paths
    rule = ""  # the route template: the metrics' endpoint label

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self._db_engine: Engine | None = None
        self._encoder: json.JSONEncoder | None = None
        self._compact: json.JSONEncoder | None = None

    def handles(self, environ: dict[str, Any]) -> bool:
        raise NotImplementedError

    def answer(self, environ: dict[str, Any], started: float,
               start_response: Callable[..., Any]) -> list[bytes] | None:
        raise NotImplementedError

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if self.handles(environ) and self.app.config[self.setting]:
            answered = self.answer(environ, time.perf_counter(), start_response)
            if answered is not None:
                return answered
        return self.wsgi_app(environ, start_response)

    def engine(self) -> Engine:
        """The app's engine (Flask-SQLAlchemy keeps one per app; dispose() keeps the object)."""
        if self._db_engine is None:
            with self.app.app_context():
                self._db_engine = db.engine
        return self._db_engine

    def encoder(self) -> json.JSONEncoder:
        """Flask's JSON settings (sort_keys, ensure_ascii) in one encoder built once, instead
        of one per json.dumps() call."""
        if self._encoder is None:
            provider = self.app.json
            self._encoder = json.JSONEncoder(
                sort_keys=getattr(provider, "sort_keys", True),
                ensure_ascii=getattr(provider, "ensure_ascii", True))
        return self._encoder

    def compact(self) -> json.JSONEncoder:
        """encoder() as jsonify() renders: compact, or indented in debug mode."""
        if self._compact is None:
            provider = self.app.json
            pretty = getattr(provider, "compact", None) is False or (
                getattr(provider, "compact", None) is None and self.app.debug)
            self._compact = json.JSONEncoder(
                sort_keys=getattr(provider, "sort_keys", True),
                ensure_ascii=getattr(provider, "ensure_ascii", True),
                **({"indent": 2} if pretty else {"separators": (",", ":")}))
        return self._compact

    def respond(self, environ: dict[str, Any], start_response: Callable[..., Any],
                started: float, payload: bytes, client_id: str) -> list[bytes]:
        """200 with `payload` (JSON), the headers Flask's answer would carry, the metrics and
        the request log line."""
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            ("X-Request-ID", rid), *no_store_headers(environ.get("wsgi.url_scheme") == "https")])
        telemetry.record(self.rule, environ["REQUEST_METHOD"], environ["PATH_INFO"], 200,
                         time.perf_counter() - started, request_id=rid,
                         client_ip=environ.get("REMOTE_ADDR"), client_id=client_id,
                         error_code=None, user_agent=environ.get("HTTP_USER_AGENT"))
        return [payload]
