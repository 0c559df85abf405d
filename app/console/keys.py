"""Key pages: My keys, create (secret shown once), detail, rotate, revoke, tokens."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import abort, make_response, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.clock import utcnow
from app.console import bp, forms, session
from app.extensions import db
from app.models import ApiKey, Role, User, Workspace
from app.services import access, audit_query
from app.services import keys as key_service
from app.services import tokens as token_service
from app.services.errors import DomainError, InvalidInput
from app.web.context import issuer

STATES = ("active", "expired", "revoked", "all")
PRESET_DAYS = (7, 30, 90)
DEFAULT_PRESET = 30
RECENT_EVENTS = 20
# Service field names -> the form's fields.
CREATE_FIELDS = {"name": "name", "scopes": "scopes", "expires_at": "expires",
                 "expires_in_days": "expires", "expires": "expires"}
ROTATE_FIELDS = {"grace_period": "grace_period"}


def _principal(workspace: Workspace, role: Role) -> access.Principal:
    user = session.current()
    assert user is not None  # @signed_in
    return access.person_principal(db.session, user.user_id, workspace.id, role)


def _no_store(page: str, status: int = 200) -> Response:
    """A page holding a secret: never stored by any cache, never kept server-side."""
    response = make_response(page, status)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- My keys -----------------------------------------------------------------------------


@bp.get("/w/<slug>/keys")
@session.signed_in
def keys(slug: str) -> str:
    workspace, role = session.workspace_context(slug)
    principal = _principal(workspace, role)
    state = request.args.get("state", "active")
    if state not in STATES:
        abort(400, description="State must be one of active, expired, revoked, all.")
    rows = key_service.list_keys(db.session, workspace_id=workspace.id,
                                 user_id=access.key_owner_filter(principal),
                                 state=None if state == "all" else state)
    return render_template("console/keys.html", workspace=workspace, role=role, keys=rows,
                           state=state, states=STATES, now=utcnow(),
                           show_owner=principal.manages_keys)


# --- create -------------------------------------------------------------------------------


def expiry_choices(workspace: Workspace) -> tuple[list[tuple[str, str]], str]:
    """The expiry options this workspace's policy allows, and the one pre-selected."""
    limit = workspace.max_key_lifetime_days
    days = [d for d in PRESET_DAYS if limit is None or d <= limit]
    if limit is not None and limit < PRESET_DAYS[-1] and limit not in days:
        days.append(limit)
    choices = [(str(d), f"{d} days" + (" (the workspace maximum)" if d == limit else ""))
               for d in days]
    if limit is None and workspace.default_key_lifetime_days is None:
        choices.append(("never", "Never"))  # else the service would apply the default
    choices.append(("custom", "Custom date"))
    default = str(DEFAULT_PRESET) if DEFAULT_PRESET in days else (str(days[-1]) if days
                                                                  else "custom")
    return choices, default


def _render_new(workspace: Workspace, role: Role, principal: access.Principal, *,
                values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                status: int = 200) -> tuple[str, int]:
    choices, default = expiry_choices(workspace)
    today = utcnow().date()
    latest = (today + timedelta(days=workspace.max_key_lifetime_days)
              if workspace.max_key_lifetime_days else None)
    values = values or {"name": "", "scopes": [], "expires": default, "expires_on": ""}
    return render_template(
        "console/key_new.html", workspace=workspace, role=role, values=values,
        errors=errors or {}, scopes=access.grantable_scopes(db.session, principal),
        management=key_service.MANAGEMENT_SCOPES, choices=choices,
        earliest=(today + timedelta(days=1)).isoformat(),
        latest=latest.isoformat() if latest else None), status


def _expiry_from_form(expires: str, expires_on: str) -> dict[str, Any]:
    """The create_key arguments for the chosen expiry (the service checks the policy)."""
    if expires == "never":
        return {}
    if expires == "custom":
        try:
            day = date.fromisoformat(expires_on.strip())
        except ValueError:
            raise InvalidInput("Choose a custom expiry date (YYYY-MM-DD).",
                               field="expires") from None
        return {"expires_at": datetime(day.year, day.month, day.day, tzinfo=UTC)}
    if expires.isascii() and expires.isdigit() and len(expires) <= 5:
        return {"expires_in_days": int(expires)}
    raise InvalidInput("Choose when the key expires.", field="expires")


@bp.get("/w/<slug>/keys/new")
@session.signed_in
def key_new(slug: str) -> tuple[str, int]:
    workspace, role = session.workspace_context(slug)
    return _render_new(workspace, role, _principal(workspace, role))


@bp.post("/w/<slug>/keys/new")
@session.signed_in
def key_create(slug: str) -> tuple[str, int] | Response:
    workspace, role = session.workspace_context(slug)
    principal = _principal(workspace, role)
    values = {"name": request.form.get("name", ""), "scopes": request.form.getlist("scopes"),
              "expires": request.form.get("expires", ""),
              "expires_on": request.form.get("expires_on", "")}
    try:
        scopes = key_service.parse_scopes(values["scopes"])
        access.check_grantable_scopes(principal, scopes)
        created = access.create_own_key(
            db.session, principal, session.actor(), name=values["name"], scopes=scopes,
            issuer=issuer(), **_expiry_from_form(values["expires"], values["expires_on"]))
    except DomainError as exc:
        return _render_new(workspace, role, principal, values=values,
                           errors=forms.field_errors(exc, CREATE_FIELDS),
                           status=forms.status_of(exc))
    return _no_store(render_template(
        "console/key_secret.html", workspace=workspace, role=role, key=created.key,
        secret=created.client_secret, token_url=f"{issuer()}/oauth/token", rotated=False,
        previous_expires_at=None))


# --- detail -------------------------------------------------------------------------------


def _visible(workspace: Workspace, role: Role, client_id: str) -> tuple[access.Principal, ApiKey]:
    principal = _principal(workspace, role)
    return principal, access.visible_key(db.session, principal, client_id)


def _render_detail(workspace: Workspace, role: Role, principal: access.Principal, key: ApiKey,
                   *, errors: dict[str, str] | None = None, grace: str | None = None,
                   status: int = 200) -> tuple[str, int]:
    now = utcnow()
    events = audit_query.page(db.session, audit_query.EventFilter(
        workspace_id=workspace.id, key=key.client_id), limit=RECENT_EVENTS).events
    # People by email rather than by id, as a person reading the page knows them.
    user_ids = {int(e.actor_id) for e in events
                if e.actor_type == "user" and e.actor_id and e.actor_id.isdigit()}
    emails = {str(uid): email for uid, email in db.session.execute(
        select(User.id, User.email).where(User.id.in_(user_ids)))} if user_ids else {}
    return render_template(
        "console/key_detail.html", workspace=workspace, role=role, key=key, now=now,
        state=key.state(now), secrets=[s for s in key.secrets if s.revoked_at is None
                                       and (s.expires_at is None or s.expires_at > now)],
        tokens=token_service.list_active(db.session, key.id), events=events, emails=emails,
        may_rotate=key.user_id == principal.user_id, errors=errors or {},
        grace=grace if grace is not None else str(key_service.DEFAULT_GRACE_PERIOD),
        max_grace=key_service.MAX_GRACE_PERIOD), status


@bp.get("/w/<slug>/keys/<client_id>")
@session.signed_in
def key_detail(slug: str, client_id: str) -> tuple[str, int]:
    workspace, role = session.workspace_context(slug)
    principal, key = _visible(workspace, role, client_id)
    return _render_detail(workspace, role, principal, key)


@bp.post("/w/<slug>/keys/<client_id>/rotate")
@session.signed_in
def key_rotate(slug: str, client_id: str) -> tuple[str, int] | Response:
    workspace, role = session.workspace_context(slug)
    principal, key = _visible(workspace, role, client_id)
    grace = request.form.get("grace_period", "").strip()
    try:
        if not grace.isascii() or not grace.isdigit() or len(grace) > 9:
            raise InvalidInput("The grace period must be a whole number of seconds between 0 "
                               f"and {key_service.MAX_GRACE_PERIOD}.", field="grace_period")
        access.check_can_rotate(principal, key)
        rotated = key_service.rotate_secret(db.session, key, session.actor(), int(grace))
    except DomainError as exc:
        return _render_detail(workspace, role, principal, key, grace=grace,
                              errors=forms.field_errors(exc, ROTATE_FIELDS),
                              status=forms.status_of(exc))
    return _no_store(render_template(
        "console/key_secret.html", workspace=workspace, role=role, key=rotated.key,
        secret=rotated.client_secret, token_url=f"{issuer()}/oauth/token", rotated=True,
        previous_expires_at=rotated.previous_expires_at))


@bp.get("/w/<slug>/keys/<client_id>/revoke")
@session.signed_in
def key_revoke_confirm(slug: str, client_id: str) -> str:
    workspace, role = session.workspace_context(slug)
    _, key = _visible(workspace, role, client_id)
    return render_template("console/key_revoke.html", workspace=workspace, role=role, key=key,
                           now=utcnow())


def _back_to(workspace: Workspace, key: ApiKey, notice: str) -> Response:
    return redirect(url_for("console.key_detail", slug=workspace.slug,
                            client_id=key.client_id, done=notice), 303)


@bp.post("/w/<slug>/keys/<client_id>/revoke")
@session.signed_in
def key_revoke(slug: str, client_id: str) -> Response:
    workspace, role = session.workspace_context(slug)
    principal = _principal(workspace, role)
    key = access.visible_key(db.session, principal, client_id, lock=True)
    key_service.revoke_key(db.session, key, session.actor())
    return _back_to(workspace, key, "revoked")


@bp.post("/w/<slug>/keys/<client_id>/tokens/revoke")
@session.signed_in
def key_tokens_revoke(slug: str, client_id: str) -> Response:
    workspace, role = session.workspace_context(slug)
    principal = _principal(workspace, role)
    key = access.visible_key(db.session, principal, client_id, lock=True)
    key_service.revoke_tokens(db.session, key, session.actor())
    return _back_to(workspace, key, "tokens_revoked")


@bp.post("/w/<slug>/keys/<client_id>/tokens/<jti>/revoke")
@session.signed_in
def key_token_revoke(slug: str, client_id: str, jti: str) -> Response:
    workspace, role = session.workspace_context(slug)
    _, key = _visible(workspace, role, client_id)
    token_service.revoke_of_key(db.session, key, jti, session.actor())
    return _back_to(workspace, key, "token_revoked")
