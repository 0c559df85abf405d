"""Who may do what in the management API: the caller's role, key visibility, grantable scopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, Invitation, Membership, Resource, Role, User, Workspace
from app.services import invitations as invitation_service
from app.services import keys as key_service
from app.services.audit import Actor
from app.services.errors import Forbidden, NotFound
from app.services.tokens import TokenInfo


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a management token, with facts read at request time (not mint time)."""

    user_id: int
    workspace_id: int
    role: Role
    client_id: str
    key_scopes: frozenset[str]

    @property
    def manages_keys(self) -> bool:
        return self.role.manages_workspace

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


def principal_of(token: TokenInfo) -> Principal:
    """The caller behind a checked Bearer token: its current role and its key's current scopes.

    Both come from the Bearer check's own statement (tokens.lookup joins the membership and
    the key), read on every request, so a demoted admin or a narrowed key loses its rights
    at once, whatever its token said when it was minted. The grantable scopes are those both
    the key and the token hold: a token narrowed at mint time stays narrow.
    """
    if token.role is None:  # not a member: the Bearer check already refused such a token
        raise Forbidden("the calling user is no longer a member of this workspace")
    return Principal(user_id=token.user_id, workspace_id=token.workspace_id,
                     role=Role(token.role), client_id=token.client_id,
                     key_scopes=token.key_scopes & frozenset(token.scopes))


def offered_scopes(session: Session) -> list[str]:
    """Every scope a key can be given here: keymint's own, then the registered resources'."""
    own = [key_service.INTROSPECT_SCOPE, *sorted(key_service.MANAGEMENT_SCOPES)]
    extra: set[str] = set()
    for scopes in session.scalars(select(Resource.scopes)):
        extra.update(scopes.split())
    return own + sorted(extra - set(own))


def grantable_scopes(session: Session, principal: Principal) -> list[str]:
    """The scopes `principal` may give a new key (what check_grantable_scopes accepts)."""
    return [s for s in offered_scopes(session) if s in principal.key_scopes
            and (principal.manages_keys or s not in key_service.MANAGEMENT_SCOPES)]


def person_principal(session: Session, user_id: int, workspace_id: int,
                     role: Role) -> Principal:
    """A person acting in the web console with their current role, granting what the API
    would let them grant. Admins and owners manage the workspace's keys: any offered scope.
    A member, through the API, grants only scopes the token they call with holds: here, the
    scopes their own live keys in this workspace hold (never a management scope:
    check_grantable_scopes), so the console lets nobody grant more than /api/v1 would."""
    if role.manages_workspace:
        held = frozenset(offered_scopes(session))
    else:
        held = frozenset(scope for key in key_service.list_keys(
            session, workspace_id=workspace_id, user_id=user_id, state="active")
            for scope in key.scopes.split())
    return Principal(user_id=user_id, workspace_id=workspace_id, role=role, client_id="",
                     key_scopes=held)


def caller_workspace(session: Session, principal: Principal) -> Workspace:
    """The workspace the caller's token belongs to (it exists: the token was just checked)."""
    return session.get_one(Workspace, principal.workspace_id)


def create_own_key(session: Session, principal: Principal, actor: Actor, *, name: str,
                   scopes: list[str], expires_at: datetime | None = None,
                   expires_in_days: int | None = None,
                   rate_limit: str | None = None, resources: list[str] | None = None,
                   introspects_for: str | None = None,
                   issuer: str | None = None) -> key_service.CreatedKey:
    """A new key for the caller itself, in its workspace (check_grantable_scopes first)."""
    if rate_limit is not None:
        check_can_set_rate_limit(principal)
    return key_service.create_key(
        session, caller_workspace(session, principal), session.get_one(User, principal.user_id),
        actor, name=name, scopes=scopes, expires_at=expires_at,
        expires_in_days=expires_in_days, rate_limit=rate_limit, resources=resources,
        introspects_for=introspects_for, issuer=issuer)


def update_key(session: Session, principal: Principal, key: ApiKey, actor: Actor,
               **changes: Any) -> ApiKey:
    """key_service.update_key within the policy of the caller's workspace."""
    if "rate_limit" in changes:
        check_can_set_rate_limit(principal)
    return key_service.update_key(session, key, caller_workspace(session, principal), actor,
                                  **changes)


def role_now(session: Session, user_id: int, workspace_id: int) -> Role | None:
    """The user's role in the workspace as stored now (None: not a member), whatever the
    token said when it was minted."""
    role = session.scalar(select(Membership.role).where(
        Membership.user_id == user_id, Membership.workspace_id == workspace_id))
    return None if role is None else Role(role)


def check_can_list_legacy_keys(session: Session, user_id: int, workspace_id: int) -> None:
    """Legacy keys (and their usage) are for admins and owners, by the role stored now."""
    role = role_now(session, user_id, workspace_id)
    if role is None or not role.manages_workspace:
        raise Forbidden("listing legacy keys needs the admin or owner role")


def key_owner_filter(principal: Principal) -> int | None:
    """Members see only their own keys; admins and owners see every key of the workspace."""
    return None if principal.manages_keys else principal.user_id


def key_list_owner(session: Session, principal: Principal, user: str | None) -> int | None:
    """Whose keys a listing shows (None: everyone's). `user` is a user id or an email; a
    member asking for someone else's keys gets an empty listing (owner 0), not an error."""
    owner = key_owner_filter(principal)
    if user is None:
        return owner
    wanted = key_service.user_id_for_filter(session, user)
    return wanted if owner is None or wanted == owner else 0


def visible_key(session: Session, principal: Principal, client_id: str, *,
                lock: bool = False) -> ApiKey:
    """The key if the caller may see it; otherwise NotFound, so existence does not leak."""
    key = key_service.get_key(session, client_id, workspace_id=principal.workspace_id, lock=lock)
    owner = key_owner_filter(principal)
    if owner is not None and key.user_id != owner:
        raise NotFound(f"no key {client_id!r}", field="client_id")
    return key


def check_can_rotate(principal: Principal, key: ApiKey) -> None:
    """Only a key's own user may rotate it: a rotation hands out a working secret, and an
    admin holding another user's secret could act as that user (even as an owner)."""
    if key.user_id != principal.user_id:
        raise Forbidden("only the key's owner can rotate its secret; revoke it instead",
                        field="client_id")


def check_grantable_scopes(principal: Principal, scopes: list[str]) -> None:
    """No escalation: a new key gets only scopes the calling token holds (and so its key),
    and management scopes only when the caller is an admin or owner."""
    not_held = [s for s in scopes if s not in principal.key_scopes]
    if not_held:
        raise Forbidden("a key can only be given scopes the calling token holds; not held: "
                        + " ".join(not_held), field="scopes")
    management = [s for s in scopes if s in key_service.MANAGEMENT_SCOPES]
    if management and not principal.manages_keys:
        raise Forbidden("only admins and owners can give a key management scopes: "
                        + " ".join(management), field="scopes")


def require_manager(principal: Principal, what: str) -> None:
    if not principal.manages_keys:
        raise Forbidden(f"only admins and owners can {what}")


def check_can_set_rate_limit(principal: Principal) -> None:
    """A key's own rate limit can lift it above the server's per-key defaults: admins only."""
    if not principal.manages_keys:
        raise Forbidden("only admins and owners can set a key's rate_limit", field="rate_limit")


def require_owner(principal: Principal, what: str) -> None:
    if not principal.is_owner:
        raise Forbidden(f"only owners can {what}")


def check_can_add(principal: Principal, role: Role) -> None:
    """Admins add plain members; granting admin or owner is an owner's decision."""
    require_manager(principal, "add members")
    if role != Role.MEMBER and not principal.is_owner:
        raise Forbidden(f"only owners can add a member with the role {role.value}", field="role")


def check_can_remove(principal: Principal, target: Membership) -> None:
    """Anyone may leave; admins remove plain members; only owners remove admins and owners."""
    if target.user_id == principal.user_id:
        return
    require_manager(principal, "remove members")
    if target.role != Role.MEMBER and not principal.is_owner:
        raise Forbidden(f"only owners can remove a member with the role {target.role}",
                        field="user_id")


def membership_in(session: Session, principal: Principal, user_id: str) -> Membership:
    """A membership of the caller's workspace by user id; NotFound for anything else."""
    if not user_id.isascii() or not user_id.isdigit() or len(user_id) > 18:
        raise NotFound(f"no member {user_id!r}", field="user_id")
    membership = session.scalar(select(Membership).where(
        Membership.workspace_id == principal.workspace_id, Membership.user_id == int(user_id)))
    if membership is None:
        raise NotFound(f"no member {user_id!r}", field="user_id")
    return membership


def check_can_see_invitation(principal: Principal, invitation: Invitation, user: User) -> None:
    """The invitee sees an invitation addressed to them, with a token from any workspace;
    admins and owners (with members:read) see their workspace's. For anyone else it does
    not exist."""
    manager = (invitation.workspace_id == principal.workspace_id and principal.manages_keys
               and "members:read" in principal.key_scopes)
    if not manager and not invitation_service.is_addressed_to(invitation, user):
        raise NotFound(f"no invitation {invitation.public_id!r}", field="invitation_id")


def check_can_revoke_invitation(principal: Principal, invitation: Invitation) -> None:
    """Whoever could have sent it may withdraw it: admins for members, owners for any role."""
    if invitation.workspace_id != principal.workspace_id:
        raise NotFound(f"no invitation {invitation.public_id!r}", field="invitation_id")
    check_can_add(principal, Role(invitation.role))
