"""The common introspection answered below Flask: authenticated, in budget, nothing to write.

Resource servers introspect on every request they serve, and nearly every introspection is
the same: HTTP Basic (or client_secret_post) credentials of a key holding `introspect`, one
`token` (and maybe a `token_type_hint`), a key whose last use was recorded a moment ago.
Flask's request context, its hook chain and Authlib's request and endpoint objects cost
several times what such an answer needs (docs/performance.md). This WSGI layer answers that
case itself with the same pieces the full path uses: the same single statement
(tokens.load_caller_and_token), the same secret check (keys.match_secret), the same rate
limits (rate_limits.authenticated_request_allowed), the same answer
(endpoints.introspection_answer), the same headers, metrics and request log line.

Anything else goes to the full path untouched: a query string, another content type, an
unknown, repeated or odd parameter, a malformed or wrong credential, a key without the
scope, a legacy key, a key whose last use is due to be written, any refusal by a rate limit,
an issuer not derived yet. The full path then answers it as it always has (errors, audit
events, 429s, the legacy hooks), so the fast path changes no answer, only what a common one
costs. Nothing is cached: every answer is read from the database when the request arrives.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.sansio.utils import get_host

from app import credentials
from app.clock import utcnow
from app.extensions import db
from app.oauth import endpoints
from app.runtime import limiter
from app.services import keys as key_service
from app.services import tokens as token_service
from app.services.keys import INTROSPECT_SCOPE
from app.web import basic_auth, rate_limits, telemetry
from app.web.context import derived_issuer, no_store_headers, request_id_from
from app.web.validation import FORM_CONTENT_TYPE

PATH = "/oauth/introspect"
ENDPOINT = "oauth.introspect"  # the Flask endpoint name: rate-limit buckets are keyed by it
RULE = PATH  # the metrics' endpoint label (the route template)
KEY_SETTING = "KEYMINT_RATELIMIT_INTROSPECT"
# The parameters a common introspection sends; anything else is the full path's to judge.
_PARAMETERS = frozenset({"token", "token_type_hint", "client_id", "client_secret"})
# A common introspection is a few hundred bytes; a larger body is the full path's.
_MAX_BODY = 4096

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _form(body: bytes) -> dict[str, str] | None:
    """The urlencoded body as one value per name, or None when it is not a plain one."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    form: dict[str, str] = {}
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        if not sep or name not in _PARAMETERS or name in form:
            return None
        form[name] = unquote_plus(value) if ("%" in value or "+" in value) else value
    return form


def _credentials(environ: dict[str, Any], form: dict[str, str]) -> tuple[str, str] | None:
    """(client_id, secret) as KeyAuthentication would take them, or None for any case it
    would refuse or has to audit."""
    header = environ.get("HTTP_AUTHORIZATION")
    if header:
        try:
            basic = basic_auth.parse_basic(header)
        except basic_auth.MalformedBasic:
            return None
        if basic is None or "client_secret" in form:
            return None
        if "client_id" in form and form["client_id"] != basic[0]:
            return None
        return basic
    if "client_id" not in form or "client_secret" not in form:
        return None
    return form["client_id"], form["client_secret"]


class FastIntrospection:
    """WSGI middleware in front of the Flask app (inside ProxyFix and the body limit)."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self._db_engine: Engine | None = None
        self._encoder: json.JSONEncoder | None = None

    def _json(self) -> json.JSONEncoder:
        """Flask's JSON as Authlib's answers use it (sort_keys, ensure_ascii), one encoder
        built once instead of one per json.dumps() call."""
        if self._encoder is None:
            provider = self.app.json
            self._encoder = json.JSONEncoder(
                sort_keys=getattr(provider, "sort_keys", True),
                ensure_ascii=getattr(provider, "ensure_ascii", True))
        return self._encoder

    def _engine(self) -> Engine:
        """The app's engine (Flask-SQLAlchemy keeps one per app; dispose() keeps the object)."""
        if self._db_engine is None:
            with self.app.app_context():
                self._db_engine = db.engine
        return self._db_engine

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or not self.app.config["KEYMINT_INTROSPECTION_FAST_PATH"]):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = self._body(environ)
        if body is not None:
            answered = self._answer(environ, body, started, start_response)
            if answered is not None:
                return answered
            environ["wsgi.input"] = io.BytesIO(body)
        return self.wsgi_app(environ, start_response)

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The request body, when the request can be a common introspection at all."""
        if (environ.get("QUERY_STRING") or "HTTP_X_API_KEY" in environ
                or "HTTP_TRANSFER_ENCODING" in environ):
            return None
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != \
                FORM_CONTENT_TYPE:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= _MAX_BODY:
            return None
        body = environ["wsgi.input"].read(length)
        return body if len(body) == length else None

    def _issuer(self, environ: dict[str, Any]) -> str | None:
        configured = self.app.config.get("KEYMINT_ISSUER")
        if configured:
            return configured
        scheme = environ.get("wsgi.url_scheme", "http")
        host = get_host(scheme, environ.get("HTTP_HOST"),
                        (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
                        self.app.config.get("TRUSTED_HOSTS"))
        return derived_issuer(scheme, host, environ.get("SCRIPT_NAME", ""))

    def _answer(self, environ: dict[str, Any], body: bytes, started: float,
                start_response: Callable[..., Any]) -> list[bytes] | None:
        form = _form(body)
        if form is None or not form.get("token"):
            return None
        presented = _credentials(environ, form)
        if presented is None or not credentials.is_client_id(presented[0]):
            return None
        client_id, secret = presented
        token = form["token"]
        if not endpoints.is_keymint_format(token) and \
                not token_service.is_presented_token(token):
            return None  # maybe a legacy key: its answer carries headers and counts usage
        try:
            iss = self._issuer(environ)
        except Exception:  # a Host header Werkzeug refuses: the full path answers it
            return None
        if iss is None:
            return None
        ip = environ.get("REMOTE_ADDR")
        config = self.app.config
        now = utcnow()
        try:
            cred, info = token_service.load_caller_and_token(self._engine(), client_id, token,
                                                             now)
        except SQLAlchemyError:  # the full path maps it (503, pool timeout, ...)
            return None
        if (cred is None or key_service.match_secret(cred, secret) is None
                or INTROSPECT_SCOPE not in cred.scopes
                or key_service.use_is_due(cred, now, config["KEYMINT_LAST_USED_INTERVAL"])
                or not rate_limits.authenticated_request_allowed(
                    limiter.counter_of(self.app), config["KEYMINT_RATELIMIT_KEY_PREFIX"],
                    ENDPOINT, KEY_SETTING, client_id, ip, cred.rate_limit)):
            return None
        answer = endpoints.introspection_answer(info, cred, now, iss)
        payload = self._json().encode(answer).encode()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            ("X-Request-ID", rid), *no_store_headers(environ.get("wsgi.url_scheme") == "https")])
        telemetry.record(RULE, "POST", PATH, 200, time.perf_counter() - started,
                         request_id=rid, client_ip=ip, client_id=cred.client_id,
                         error_code=None, user_agent=environ.get("HTTP_USER_AGENT"))
        return [payload]


def init_app(app: Flask) -> None:
    """Put the fast path in front of Flask's own WSGI app (call before any other middleware,
    so ProxyFix and the body limit run first)."""
    app.wsgi_app = FastIntrospection(app, app.wsgi_app)  # type: ignore[method-assign]
