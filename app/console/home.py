"""The console's entry pages: start, workspace switch, sign-in page, sign-out."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console import bp, session


@bp.get("/")
def index() -> Response | str:
    """Signed out: the sign-in page; signed in: the keys of the person's first workspace."""
    user = session.current()
    if user is None:
        return redirect(url_for("console.sign_in"))
    workspaces = session.user_workspaces(user)
    if not workspaces:
        return render_template("console/no_workspace.html")
    return redirect(url_for("console.keys", slug=workspaces[0][0]))


@bp.get("/switch")
@session.signed_in
def switch() -> Response:
    """The workspace switcher (a GET form, so it works without JavaScript)."""
    slug = request.args.get("workspace", "")
    workspace, _ = session.workspace_context(slug)
    return redirect(url_for("console.keys", slug=workspace.slug))


@bp.get("/sign-in")
def sign_in() -> Response | str:
    if session.current() is not None:
        return redirect(session.safe_next())
    next_path = request.args.get("next", "")
    return render_template(
        "console/sign_in.html",
        next=next_path if session.is_safe_console_path(next_path) else "",
        sso=bool(current_app.config.get("KEYMINT_CONSOLE_OIDC_ISSUER")),
        error=None)


@bp.post("/sign-out")
def sign_out() -> Response:
    session.sign_out()
    return redirect(url_for("console.sign_in", signed_out=1))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Response:
    session.sign_out_everywhere()
    return redirect(url_for("console.sign_in", signed_out=1))
