"""CSRF protection of every console form: a token bound to the browser, checked on each POST,
with an Origin/Referer check as defence in depth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Response, abort, current_app, g, request

from app.console import session

# Before sign-in there is no session to bind a token to: a random cookie stands in.
PRE_SESSION_COOKIE = "keymint_console_csrf"
FIELD = "csrf_token"
REFUSED = ("This form expired or did not come from keymint. Reload the page and try again.")
_G_NEW_COOKIE = "console_csrf_new_cookie"


def _sign(binding: str) -> str:
    key = current_app.config["SECRET_KEY"]
    if isinstance(key, str):
        key = key.encode()
    mac = hmac.new(key, b"keymint-console-csrf\x00" + binding.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def _pre_session_value() -> str:
    value = g.get(_G_NEW_COOKIE) or request.cookies.get(PRE_SESSION_COOKIE)
    if not value:
        value = secrets.token_urlsafe(32)
        setattr(g, _G_NEW_COOKIE, value)
    return value


def csrf_token() -> str:
    """The token for this browser's forms (Jinja global `csrf_token()`): bound to its
    session cookie when signed in, else to a pre-session cookie set on this response.
    A sign-in during this request binds the new session."""
    if session.current() is not None:
        value = g.get(session.G_SET_COOKIE) or session.cookie_value()
        if value:
            return _sign("session:" + value)
    return _sign("pre:" + _pre_session_value())


def _expected() -> list[str]:
    bindings = []
    value = session.cookie_value()
    if value:
        bindings.append("session:" + value)
    pre = request.cookies.get(PRE_SESSION_COOKIE)
    if pre:
        bindings.append("pre:" + pre)
    return [_sign(binding) for binding in bindings]


def _same_origin(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[::1": not an origin this site has
        return False
    return f"{parts.scheme}://{parts.netloc}".lower() == f"{request.scheme}://{request.host}".lower()


def check_post() -> None:
    """Every POST to the console carries a valid token (400 page otherwise). A token is
    bound to the cookie the browser sent, even a session that has since timed out: the
    view's @signed_in then sends the person to sign in rather than refusing the form."""
    if request.method != "POST" or not current_app.config.get("SECRET_KEY"):
        return
    origin = request.headers.get("Origin")
    if origin and origin != "null" and not _same_origin(origin):
        abort(400, description=REFUSED)
    referer = request.headers.get("Referer")
    if not origin and referer and not _same_origin(referer):
        abort(400, description=REFUSED)
    given = request.form.get(FIELD, "")
    # compare_digest takes ASCII strings only; a token this site made is always ASCII.
    if not given or not given.isascii() or not any(
            hmac.compare_digest(given, expected) for expected in _expected()):
        abort(400, description=REFUSED)


def write_cookie(response: Response) -> None:
    """Set the pre-session cookie when this request made one."""
    value = g.pop(_G_NEW_COOKIE, None)
    if value:
        session.set_console_cookie(response, PRE_SESSION_COOKIE, value)
