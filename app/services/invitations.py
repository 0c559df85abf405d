"""Invitations: admins offer a role to an email; only that address's own user can accept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from app import credentials
from app.clock import utcnow
from app.models import Invitation, InvitationStatus, Membership, User, Workspace
from app.services import audit, webhooks
from app.services.accounts import get_membership, normalize_email, parse_role
from app.services.audit import Actor
from app.services.errors import Conflict, Forbidden, Gone, NotFound

# GitHub's organisation invitations expire after 7 days too.
INVITATION_TTL = timedelta(days=7)
PUBLIC_ID_LEN = len(credentials.new_invitation_id())


def _lock_workspace(session: Session, workspace_id: int) -> None:
    """Serialise invitations of one workspace, so one email never gets two pending ones."""
    session.execute(select(Workspace.id).where(Workspace.id == workspace_id).with_for_update())


def invite(session: Session, workspace: Workspace, email: str, role: str, actor: Actor,
           invited_by: int | None = None) -> Invitation:
    """A pending invitation for `email`, whether or not the address has an account.

    No user is looked up by email here: what the caller gets back, and how long it takes,
    does not depend on whether the address is known. Only a current member of this
    workspace (whom its member list shows anyway) or a live invitation is a conflict.
    """
    email = normalize_email(email)
    parsed = parse_role(role)
    now = utcnow()
    _lock_workspace(session, workspace.id)
    member = session.scalar(
        select(Membership.id).join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace.id, User.email == email))
    if member is not None:
        raise Conflict(f"{email} is already a member of this workspace", field="email")
    if any(i.state(now) == InvitationStatus.PENDING for i in session.scalars(
            select(Invitation).where(Invitation.workspace_id == workspace.id,
                                     Invitation.email == email,
                                     Invitation.status == InvitationStatus.PENDING.value))):
        raise Conflict(f"{email} already has a pending invitation; revoke it to send another",
                       field="email")
    invitation = Invitation(public_id=credentials.new_invitation_id(), workspace_id=workspace.id,
                            email=email, role=parsed.value,
                            status=InvitationStatus.PENDING.value, invited_by=invited_by,
                            created_at=now, expires_at=now + INVITATION_TTL)
    session.add(invitation)
    session.flush()
    audit.record(session, "invitation.created", actor, workspace_id=workspace.id,
                 target_type="invitation", target_id=invitation.public_id,
                 details={"email": email, "role": parsed.value})
    return invitation


def get_invitation(session: Session, public_id: str, *, lock: bool = False) -> Invitation:
    """The invitation `public_id` (NotFound otherwise); `lock` holds its row until commit."""
    if (not public_id.isascii() or len(public_id) != PUBLIC_ID_LEN
            or not public_id.startswith(credentials.INVITATION_ID_PREFIX)):
        raise NotFound(f"no invitation {public_id!r}", field="invitation_id")
    query = select(Invitation).where(Invitation.public_id == public_id)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"no invitation {public_id!r}", field="invitation_id")
    return found


def list_pending(session: Session, workspace_id: int) -> list[Invitation]:
    """The workspace's invitations that can still be accepted, oldest first."""
    return list(session.scalars(
        select(Invitation).where(Invitation.workspace_id == workspace_id,
                                 Invitation.status == InvitationStatus.PENDING.value,
                                 Invitation.expires_at > utcnow())
        .order_by(Invitation.id)))


def pending_for(session: Session, user: User) -> list[Invitation]:
    """Invitations addressed to `user`'s email that can still be accepted, oldest first,
    each with its workspace."""
    return list(session.scalars(
        select(Invitation).options(joinedload(Invitation.workspace))
        .where(Invitation.email == user.email,
               Invitation.status == InvitationStatus.PENDING.value,
               Invitation.expires_at > utcnow())
        .order_by(Invitation.id)))


def is_addressed_to(invitation: Invitation, user: User) -> bool:
    return invitation.email == user.email


def revoke(session: Session, invitation: Invitation, actor: Actor) -> Invitation:
    """Withdraw an invitation that was not accepted (revoking twice changes nothing)."""
    state = invitation.state(utcnow())
    if state == InvitationStatus.ACCEPTED:
        raise Conflict("the invitation was already accepted; remove the member instead",
                       field="invitation_id")
    if state == InvitationStatus.REVOKED:
        return invitation
    invitation.status = InvitationStatus.REVOKED.value
    invitation.revoked_at = utcnow()
    audit.record(session, "invitation.revoked", actor, workspace_id=invitation.workspace_id,
                 target_type="invitation", target_id=invitation.public_id,
                 details={"email": invitation.email, "role": invitation.role,
                          "was": state.value})
    session.flush()
    return invitation


def accept(session: Session, invitation: Invitation, user: User, actor: Actor) -> Membership:
    """Make `user` a member with the invited role. Only the invited address's own, active
    user may; for anyone else the invitation does not exist (NotFound, nothing leaks).
    Expired or revoked: Gone; accepted already, or already a member: Conflict."""
    if not is_addressed_to(invitation, user):
        raise NotFound(f"no invitation {invitation.public_id!r}", field="invitation_id")
    if not user.is_active:
        raise Forbidden(f"user {user.email} is disabled")
    state = invitation.state(utcnow())
    if state == InvitationStatus.ACCEPTED:
        raise Conflict("the invitation was already accepted", field="invitation_id")
    if state == InvitationStatus.REVOKED:
        raise Gone("the invitation was revoked; ask for a new one", field="invitation_id")
    if state == InvitationStatus.EXPIRED:
        raise Gone("the invitation expired; ask for a new one", field="invitation_id")
    workspace = session.get_one(Workspace, invitation.workspace_id)
    if get_membership(session, workspace, user) is not None:
        raise Conflict(f"{user.email} is already a member of this workspace",
                       field="invitation_id")
    now = utcnow()
    membership = Membership(user_id=user.id, workspace_id=workspace.id, role=invitation.role,
                            created_at=now)
    session.add(membership)
    invitation.status = InvitationStatus.ACCEPTED.value
    invitation.accepted_at = now
    invitation.accepted_by = user.id
    session.flush()
    audit.record(session, "invitation.accepted", actor, workspace_id=workspace.id,
                 target_type="invitation", target_id=invitation.public_id,
                 details={"user": str(user.id), "role": invitation.role})
    audit.record(session, "member.added", actor, workspace_id=workspace.id,
                 target_type="user", target_id=str(user.id),
                 details={"role": invitation.role, "invitation": invitation.public_id})
    webhooks.emit(session, "member.added", workspace.id,
                  {"user_id": str(user.id), "email": user.email, "role": invitation.role})
    return membership
