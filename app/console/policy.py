"""Workspace policy page: key lifetimes, token lifetime and format; owners edit, others read."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console import admin, bp, session
from app.extensions import db
from app.models import TokenFormat
from app.services import access, accounts
from app.services.errors import DomainError, InvalidInput

NUMBER_FIELDS = ("max_key_lifetime_days", "default_key_lifetime_days", "token_ttl_seconds")
# The API's field names in the services' messages, as the page's labels say them.
WORDS = {"max_key_lifetime_days": "the maximum key lifetime (days)",
         "default_key_lifetime_days": "the default key lifetime (days)",
         "token_ttl_seconds": "the access token lifetime (seconds)",
         "token_format": "the access token format"}



def _effective_ttl(workspace: object) -> int:
    config = current_app.config
    jwt = getattr(workspace, "token_format", None) == TokenFormat.JWT
    return accounts.effective_token_ttl(
        getattr(workspace, "token_ttl_seconds", None), config["KEYMINT_ACCESS_TOKEN_TTL"],
        config["KEYMINT_MAX_ACCESS_TOKEN_TTL"],
        config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] if jwt else None)


def _render(p: admin.Page, *, errors: dict[str, str] | None = None,
            values: dict[str, str] | None = None, status: int = 200) -> Response:
    workspace = p.workspace
    shown = values if values is not None else {
        name: "" if getattr(workspace, name) is None else str(getattr(workspace, name))
        for name in NUMBER_FIELDS} | {"token_format": workspace.token_format}
    body = render_template(
        "console/policy.html", workspace=workspace, page=p, values=shown, errors=errors or {},
        formats=[f.value for f in TokenFormat], effective_ttl=_effective_ttl(workspace),
        max_token_ttl=current_app.config["KEYMINT_MAX_ACCESS_TOKEN_TTL"],
        jwt_available=current_app.config.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY") is not None,
        saved=request.args.get("saved") == "1")
    return admin.html(body, status)


@bp.get("/w/<slug>/policy")
@session.signed_in
def policy(slug: str) -> Response:
    return _render(admin.page(slug))


def _number(values: dict[str, str], name: str) -> int | None:
    """A whole number, or None for an empty field (the setting is cleared)."""
    text = values[name]
    if text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise InvalidInput(f"{name} must be a whole number, or empty for no limit",
                           field=name)
    return int(text)


@bp.post("/w/<slug>/policy")
@session.signed_in
def policy_update(slug: str) -> Response:
    """Change the policy, as PATCH /api/v1/workspace (owners)."""
    p = admin.page(slug)
    values = {name: request.form.get(name, "").strip() for name in NUMBER_FIELDS}
    values["token_format"] = request.form.get("token_format", p.workspace.token_format)
    try:
        access.require_owner(p.principal, "change the workspace policy")
        numbers = {name: _number(values, name) for name in NUMBER_FIELDS}
        accounts.update_policy(
            db.session, p.workspace, session.actor(),
            max_token_ttl=current_app.config["KEYMINT_MAX_ACCESS_TOKEN_TTL"],
            jwt_available=current_app.config.get(
                "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY") is not None,
            token_format=values["token_format"], **numbers)
    except DomainError as error:
        errors, status = admin.errors_of(error, words=WORDS)
        return _render(p, errors=errors, values=values, status=status)
    return redirect(url_for("console.policy", slug=slug, saved=1), 303)
