"""The console's entry pages: start, workspace switch, sign-in page, sign-out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console import allow_form_action, bp, page_url, session, sign_in_form_actions
from app.services import console_auth


@bp.get("/")
def index() -> Response | str:
    """Signed out: the sign-in page; signed in: the keys of the person's first workspace."""
    user = session.current()
    if user is None:
        return redirect(url_for("console.sign_in"))
    workspaces = session.user_workspaces(user)
    if not workspaces:
        invitations = page_url("my_invitations")
        if invitations:  # invited, not yet a member: accept there
            return redirect(invitations)
        return render_template("console/no_workspace.html")
    return redirect(url_for("console.keys", slug=workspaces[0][0]))


@bp.get("/switch")
@session.signed_in
def switch() -> Response:
    """The workspace switcher (a GET form, so it works without JavaScript)."""
    slug = request.args.get("workspace", "")
    workspace, _ = session.workspace_context(slug)
    return redirect(url_for("console.keys", slug=workspace.slug))


# Messages the sign-in page shows for `?refused=CODE` (a redirect never carries free text).
REFUSALS = {"link": console_auth.LINK_REFUSED}


def render_sign_in(error: str | None = None, status: int = 200,
                   next_path: str | None = None) -> tuple[str, int]:
    """The sign-in page, with an error message (SSO and link refusals) and its status."""
    wanted = request.values.get("next", "") if next_path is None else next_path
    issuer = current_app.config.get("KEYMINT_CONSOLE_OIDC_ISSUER")
    if issuer:
        parts = urlsplit(str(issuer))
        allow_form_action(f"{parts.scheme}://{parts.netloc}")
        sign_in_form_actions()
    return render_template(
        "console/sign_in.html",
        next=wanted if session.is_safe_console_path(wanted) else "",
        sso=bool(issuer), error=error), status


@bp.get("/sign-in")
def sign_in() -> Response | tuple[str, int]:
    if session.current() is not None:
        return redirect(session.safe_next())
    return render_sign_in(REFUSALS.get(request.args.get("refused", "")))


@bp.post("/sign-out")
def sign_out() -> Response:
    session.sign_out()
    return redirect(url_for("console.sign_in", signed_out=1), 303)


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Response:
    session.sign_out_everywhere()
    return redirect(url_for("console.sign_in", signed_out=1), 303)
