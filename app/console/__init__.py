"""The web console blueprint (/console/): registration, page security headers, HTML errors."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, render_template, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask.wrappers import Request

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static")

PREFIX = "/console"
# Everything a console page may load comes from keymint itself; no inline script or style.
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

# The modules whose routes make up the console; each adds its views to `bp` on import.
# C2's admin pages (members, policy, audit, legacy, webhooks, sso) are added here.
PAGE_MODULES = ("home", "links", "keys", "sso", "members", "policy", "audit", "legacy",
                "webhooks")

# Error titles for the HTML pages; the message is the error's own (safe to show) description.
_TITLES = {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 410: "Gone", 413: "Too large",
           429: "Too many requests", 500: "Something went wrong", 503: "Unavailable"}
_HEADERS_KEPT = ("allow", "retry-after", "x-request-id")


_G_FORM_ACTION = "console_form_action"


def allow_form_action(origin: str) -> None:
    """Let this page's forms lead to `origin` too: Chromium applies form-action to the
    redirects after a form's POST, so the single sign-on button's POST, answered with a
    redirect to the identity provider, needs the provider's origin."""
    extra = g.get(_G_FORM_ACTION) or []
    if origin not in extra:
        extra.append(origin)
    setattr(g, _G_FORM_ACTION, extra)


# Functions naming further origins the sign-in page's forms lead to (None: none yet), e.g.
# the identity provider's authorization endpoint from its cached discovery document.
FORM_ACTION_SOURCES: list[Callable[[], str | None]] = []


def sign_in_form_actions() -> None:
    """Allow, on this response, every origin FORM_ACTION_SOURCES names."""
    for source in FORM_ACTION_SOURCES:
        origin = source()
        if origin:
            allow_form_action(origin)


def page_csp() -> str:
    extra = g.get(_G_FORM_ACTION)
    if not extra:
        return CSP
    return CSP.replace("form-action 'self'", "form-action 'self' " + " ".join(extra))


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _error_description(response: Response) -> str:
    try:
        body = json.loads(response.get_data(as_text=True))
    except ValueError:
        body = {}
    description = body.get("error_description") if isinstance(body, dict) else None
    return description if isinstance(description, str) else ""


def html_error(response: Response) -> Response:
    """The same error as an HTML page: the app's handlers answer JSON (they serve the API),
    a person in a browser gets a page with the same status and message."""
    status = response.status_code
    page = Response(render_template("console/error.html", status=status,
                                    title=_TITLES.get(status, "Error"),
                                    message=_error_description(response)),
                    status=status, mimetype="text/html")
    for name, value in response.headers.items():
        if name.lower() in _HEADERS_KEPT:
            page.headers[name] = value
    return page


def _finish_console_response(response: Response) -> Response:
    """After the request boundary (so its 409/503 answers are covered too): HTML errors,
    the console's cookies, and its stricter headers; app/web/context adds the rest."""
    if not is_console_path(request.path):
        return response
    from app.console import csrf, session

    if response.status_code >= 400 and response.mimetype == "application/json":
        response = html_error(response)
    session.write_cookie(response)
    csrf.write_cookie(response)
    response.headers.setdefault("Content-Security-Policy", page_csp())
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


def _nav_context() -> dict[str, Any]:
    if not is_console_path(request.path):
        return {}
    from app.console import session

    user = g.get(session.G_USER)
    return {
        "console_user": user,
        "console_workspace": g.get(session.G_WORKSPACE),
        "console_role": g.get(session.G_ROLE),
        "console_workspaces": session.user_workspaces(user) if user else [],
        "page_url": page_url,
    }


def page_url(endpoint: str, **values: Any) -> str | None:
    """url_for for a console page, or None while that page does not exist (the nav links
    to pages of other parts of the console only once they are there)."""
    from flask import url_for

    if f"console.{endpoint}" not in current_app.view_functions:
        return None
    return url_for(f"console.{endpoint}", **values)


class ConsoleFlowSession(SecureCookieSessionInterface):
    """Flask's signed-cookie session (it carries the SSO flow's state, nonce and PKCE
    verifier), Secure by the console cookies' rule rather than a fixed setting."""

    def get_cookie_secure(self, app: Flask) -> bool:
        from app.console.session import cookie_secure

        return cookie_secure()

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        # Only console pages use it: opening (and later saving) a signed cookie session for
        # every API and OAuth request cost ~70 µs each (a serializer built per request).
        if not is_console_path(request.path):
            return self.make_null_session(app)
        return super().open_session(app, request)


def _refuse_nul() -> None:
    """A NUL in a path segment, query or form value is no slug, id or filter any page knows:
    400 here, before PostgreSQL refuses it as text and the boundary reports a database
    error (503)."""
    values = [*(request.view_args or {}).values(), *request.args.values()]
    if request.method == "POST":
        values += [value for _, value in request.form.items(multi=True)]
    if any(isinstance(value, str) and "\x00" in value for value in values):
        abort(400, description="The request holds a NUL character, which no console page "
                               "accepts.")


def init_app(app: Flask) -> None:
    """Register the console. Call it before the request boundary's init_app: its
    after_request hook must run after the boundary's (Flask runs them in reverse)."""
    from app.console import csrf, session

    for name in PAGE_MODULES:  # before the first registration: routes are added on import
        importlib.import_module(f"app.console.{name}")
    if not bp.before_request_funcs:
        bp.before_request(_refuse_nul)
        bp.before_request(session.require_secret_key)
        bp.before_request(csrf.check_post)
    app.register_blueprint(bp)
    # The short-lived Flask session (the SSO flow's state) is the console's alone.
    app.config.update(SESSION_COOKIE_NAME="keymint_console_flow", SESSION_COOKIE_PATH=PREFIX,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    app.session_interface = ConsoleFlowSession()
    app.add_template_global(csrf.csrf_token, "csrf_token")
    app.context_processor(_nav_context)
    app.after_request(_finish_console_response)
