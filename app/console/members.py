"""Members page (admins, owners): list, invite, change role, remove, pending invitations;
and the invitee's side: invitations addressed to the signed-in person, accepted here."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console import admin, bp, session
from app.extensions import db
from app.models import Role, User, Workspace
from app.services import access, accounts, invitations
from app.services import keys as key_service
from app.services.errors import DomainError

NOTICES = {
    "invited": "Invitation created. It is valid for 7 days: the person signs in to the console "
               "and accepts it under Invitations.",
    "role": "Role changed.",
    "removed": "Member removed; their keys in this workspace are revoked.",
    "revoked": "Invitation revoked.",
}


def _roles_to_offer(p: admin.Page) -> list[str]:
    """Roles this person may give (access.check_can_add): owners any, admins members only."""
    return [r.value for r in Role] if p.is_owner else [Role.MEMBER.value]


def _render(p: admin.Page, *, errors: dict[str, str] | None = None, status: int = 200,
            values: dict[str, str] | None = None) -> Response:
    body = render_template(
        "console/members.html", workspace=p.workspace, page=p,
        members=accounts.list_members(db.session, p.workspace.id),
        pending_invitations=invitations.list_pending(db.session, p.workspace.id),
        roles=_roles_to_offer(p), all_roles=[r.value for r in Role], errors=errors or {},
        values=values or {}, notice=NOTICES.get(request.args.get("done", "")))
    return admin.html(body, status)


def _done(slug: str, what: str) -> Response:
    return redirect(url_for("console.members", slug=slug, done=what), 303)


@bp.get("/w/<slug>/members")
@session.signed_in
def members(slug: str) -> Response:
    return _render(admin.page(slug, managers_only=True))


@bp.post("/w/<slug>/members/invite")
@session.signed_in
def member_invite(slug: str) -> Response:
    """Invite by email, as POST /api/v1/members does (a member only once they accept)."""
    p = admin.page(slug, managers_only=True)
    values = {"email": request.form.get("email", "").strip(),
              "role": request.form.get("role", Role.MEMBER.value)}
    try:
        role = accounts.parse_role(values["role"])
        access.check_can_add(p.principal, role)
        invitations.invite(db.session, p.workspace, values["email"], role.value,
                           session.actor(), invited_by=p.user_id)
    except DomainError as error:
        errors, status = admin.errors_of(error)
        return _render(p, errors=errors, status=status, values=values)
    return _done(slug, "invited")


@bp.post("/w/<slug>/members/<user_id>/role")
@session.signed_in
def member_role(slug: str, user_id: str) -> Response:
    """Change a member's role (owners), as PATCH /api/v1/members/{user_id}."""
    p = admin.page(slug, managers_only=True)
    try:
        access.require_owner(p.principal, "change roles")
        membership = access.membership_in(db.session, p.principal, user_id)
        accounts.change_role(db.session, membership, request.form.get("role", ""),
                             session.actor())
    except DomainError as error:
        errors, status = admin.errors_of(error, field=f"role-{user_id}")
        return _render(p, errors=errors, status=status)
    return _done(slug, "role")


def _membership_or_404(p: admin.Page, user_id: str) -> Any:
    try:
        return access.membership_in(db.session, p.principal, user_id)
    except DomainError:
        abort(404, description="There is no such member in this workspace.")


@bp.route("/w/<slug>/members/<user_id>/remove", methods=["GET", "POST"])
@session.signed_in
def member_remove(slug: str, user_id: str) -> Response:
    """Remove a member (or leave: anyone may remove themselves), as DELETE
    /api/v1/members/{user_id}; GET asks for confirmation first."""
    p = admin.page(slug)
    membership = _membership_or_404(p, user_id)
    leaving = membership.user_id == p.user_id
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        try:
            access.check_can_remove(p.principal, membership)
            accounts.remove_member(db.session, membership, session.actor())
        except DomainError as error:
            errors, status = admin.errors_of(error, field="form")
        else:
            if leaving:
                return redirect(url_for("console.index"), 303)
            return _done(slug, "removed")
    elif not leaving and not p.manages:
        abort(403, description=admin.MANAGERS_ONLY)
    keys = len(key_service.list_keys(db.session, workspace_id=p.workspace.id,
                                     user_id=membership.user_id, state="active"))
    body = render_template("console/member_remove.html", workspace=p.workspace, page=p,
                           member=membership, leaving=leaving, active_keys=keys, errors=errors)
    return admin.html(body, status)


@bp.post("/w/<slug>/invitations/<invitation_id>/revoke")
@session.signed_in
def invitation_revoke(slug: str, invitation_id: str) -> Response:
    """Withdraw a pending invitation, as DELETE /api/v1/invitations/{id}."""
    p = admin.page(slug, managers_only=True)
    try:
        invitation = invitations.get_invitation(db.session, invitation_id, lock=True)
        access.check_can_revoke_invitation(p.principal, invitation)
        invitations.revoke(db.session, invitation, session.actor())
    except DomainError as error:
        errors, status = admin.errors_of(error, field=f"invitation-{invitation_id}")
        return _render(p, errors=errors, status=status)
    return _done(slug, "revoked")


# --- the invitee -------------------------------------------------------------------------


@bp.get("/invitations")
@session.signed_in
def my_invitations() -> Response:
    """Invitations addressed to the signed-in person's email, to accept."""
    user = db.session.get_one(User, session.current().user_id)  # type: ignore[union-attr]
    body = render_template("console/invitations.html",
                           pending=invitations.pending_for(db.session, user), errors={})
    return admin.html(body)


@bp.post("/invitations/<invitation_id>/accept")
@session.signed_in
def invitation_accept(invitation_id: str) -> Response:
    """Accept one, as POST /api/v1/invitations/{id}/accept: only the addressee can."""
    user = db.session.get_one(User, session.current().user_id)  # type: ignore[union-attr]
    try:
        invitation = invitations.get_invitation(db.session, invitation_id, lock=True)
        invitations.accept(db.session, invitation, user, session.actor(user.id))
    except DomainError as error:
        errors, status = admin.errors_of(error, field=f"invitation-{invitation_id}")
        body = render_template("console/invitations.html",
                               pending=invitations.pending_for(db.session, user), errors=errors)
        return admin.html(body, status)
    workspace = db.session.get_one(Workspace, invitation.workspace_id)
    return redirect(url_for("console.keys", slug=workspace.slug), 303)
