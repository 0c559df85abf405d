"""One-time sign-in links: GET shows "Continue as EMAIL", POST consumes the link once."""

from __future__ import annotations

from flask import redirect, render_template
from werkzeug.wrappers import Response

from app.console import bp, session
from app.extensions import db
from app.services import console_auth


def _refused(message: str) -> tuple[str, int]:
    return render_template("console/link.html", email=None, token=None, error=message), 400


@bp.get("/sign-in/link/<token>")
def link(token: str) -> tuple[str, int] | Response | str:
    """Nothing is consumed here: link scanners and previews fetch GETs."""
    try:
        user = console_auth.peek_login_link(db.session, token)
    except console_auth.SignInRefused as exc:
        return _refused(exc.message)
    return render_template("console/link.html", email=user.email, token=token, error=None)


@bp.post("/sign-in/link/<token>")
def use_link(token: str) -> tuple[str, int] | Response:
    try:
        user = console_auth.consume_login_link(db.session, token)
        session.sign_in(user, "link")
    except console_auth.SignInRefused as exc:
        return _refused(exc.message)
    return redirect(session.safe_next())
