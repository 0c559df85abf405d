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
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.sansio.utils import get_host

from app import credentials
from app.clock import utcnow
from app.oauth import endpoints
from app.runtime import limiter
from app.services import keys as key_service
from app.services import tokens as token_service
from app.services.keys import INTROSPECT_SCOPE
from app.web import basic_auth, rate_limits
from app.web.context import derived_issuer
from app.web.fast_path import FastPath, hand_over, taken
from app.web.validation import FORM_CONTENT_TYPE

PATH = "/oauth/introspect"
ENDPOINT = "oauth.introspect"  # the Flask endpoint name: rate-limit buckets are keyed by it
KEY_SETTING = "KEYMINT_RATELIMIT_INTROSPECT"
# The parameters a common introspection sends; anything else is the full path's to judge.
_PARAMETERS = frozenset({"token", "token_type_hint", "client_id", "client_secret"})
# A common introspection is a few hundred bytes; a larger body is the full path's.
_MAX_BODY = 4096

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


class FastIntrospection(FastPath):
    """WSGI middleware in front of the Flask app (inside ProxyFix and the body limit)."""

    rule = PATH

    def handles(self, environ: dict[str, Any]) -> bool:
        return environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST"

    def answer(self, environ: dict[str, Any], started: float,
               start_response: Callable[..., Any]) -> list[bytes] | None:
        body = self._body(environ)
        if body is None:
            return None
        answered = self._answer(environ, body, started, start_response)
        if answered is None:
            environ["wsgi.input"] = io.BytesIO(body)  # the full path reads it again
        return answered

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
        if len(body) != length:
            environ["wsgi.input"] = io.BytesIO(body)
            return None
        return body

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
            cred, info = token_service.load_caller_and_token(self.engine(), client_id, token,
                                                             now)
        except SQLAlchemyError:  # the full path maps it (503, pool timeout, ...)
            return None
        hand_over(environ, (client_id, token), (cred, info))
        if (cred is None or key_service.match_secret(cred, secret) is None
                or INTROSPECT_SCOPE not in cred.scopes
                or key_service.use_is_due(cred, now, config["KEYMINT_LAST_USED_INTERVAL"])
                or not rate_limits.authenticated_request_allowed(
                    limiter.counter_of(self.app), config["KEYMINT_RATELIMIT_KEY_PREFIX"],
                    ENDPOINT, KEY_SETTING, client_id, ip, cred.rate_limit)):
            return None
        taken(environ)  # answered here: nothing to hand over
        answer = endpoints.introspection_answer(info, cred, now, iss)
        return self.respond(environ, start_response, started,
                            self.encoder().encode(answer).encode(), cred.client_id)


def init_app(app: Flask) -> None:
    """Put the fast path in front of Flask's own WSGI app (call before any other middleware,
    so ProxyFix and the body limit run first)."""
    app.wsgi_app = FastIntrospection(app, app.wsgi_app)  # type: ignore[method-assign]
