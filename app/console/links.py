"""One-time sign-in links: GET shows "Continue as EMAIL", POST consumes the link once."""

from __future__ import annotations

from flask import make_response, redirect, render_template, url_for
from werkzeug.wrappers import Response

from app.console import bp, session
from app.extensions import db
from app.services import console_auth


def _refused() -> Response:
    """Every refusal looks the same (unknown, used, expired, disabled): the sign-in page
    with one message; 303 so a refused POST is not resent on reload."""
    return redirect(url_for("console.sign_in", refused="link"), 303)


def _no_referrer(page: str) -> Response:
    """The link page's URL holds the token: no Referer carries it anywhere, even here."""
    response = make_response(page)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/sign-in/link/<token>")
def link(token: str) -> Response:
    """Nothing is consumed here: link scanners and previews fetch GETs."""
    try:
        user = console_auth.peek_login_link(db.session, token)
    except console_auth.SignInRefused:
        return _refused()
    return _no_referrer(render_template("console/link.html", email=user.email, token=token))


@bp.post("/sign-in/link/<token>")
def use_link(token: str) -> Response:
    try:
        user = console_auth.consume_login_link(db.session, token)
    except console_auth.SignInRefused:
        return _refused()
    try:
        session.sign_in(user, "link")
    except console_auth.SignInRefused as exc:  # e.g. in no workspace: say so
        page = _no_referrer(render_template("console/link.html", email=None, token=None,
                                            error=exc.message))
        page.status_code = 403  # rolled back: the link stays usable until it expires
        return page
    return redirect(session.safe_next(), 303)
