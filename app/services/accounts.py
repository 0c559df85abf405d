"""Users, workspaces and memberships: creation, roles, disabling and removal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from app.clock import utcnow
from app.models import ApiKey, Membership, Role, TokenFormat, User, UserStatus, Workspace
from app.models.accounts import DEFAULT_MAX_KEY_LIFETIME_DAYS
from app.services import audit, webhooks
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput, NotFound
from app.transactions import begin_write

EMAIL_PATTERN = (
    r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,63}$"
)
_EMAIL = re.compile(EMAIL_PATTERN)
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_POLICY_DAYS = 3650


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(f"not a valid email address: {email!r}", field="email")
    return email


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidInput(f"invalid role {role!r}; choose one of {choices}",
                           field="role") from None


def get_user_by_email(session: Session, email: str) -> User:
    email = normalize_email(email)
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        raise NotFound(f"no user with email {email}", field="email")
    return user


def get_workspace(session: Session, slug: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
    if workspace is None:
        raise NotFound(f"no workspace {slug!r}", field="workspace")
    return workspace


def list_members(session: Session, workspace_id: int) -> list[Membership]:
    """A workspace's memberships in joining order, each with its user (one statement)."""
    return list(session.scalars(
        select(Membership).options(joinedload(Membership.user))
        .where(Membership.workspace_id == workspace_id).order_by(Membership.id)))


def effective_token_ttl(workspace_ttl: int | None, server_default: int, server_max: int,
                        jwt_ttl: int | None = None) -> int:
    """The lifetime a new token gets: the workspace's policy, else the server default;
    never above the server's maximum, nor, for a JWT (`jwt_ttl` given), above the JWT
    lifetime: a resource server that validates it locally cannot see it revoked."""
    ttl = min(workspace_ttl or server_default, server_max)
    return ttl if jwt_ttl is None else min(ttl, jwt_ttl)


def get_membership(session: Session, workspace: Workspace, user: User) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.workspace_id == workspace.id, Membership.user_id == user.id
        )
    )


def create_user(session: Session, email: str, actor: Actor) -> User:
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists", field="email")
    user = User(email=email, status=UserStatus.ACTIVE.value, created_at=utcnow())
    session.add(user)
    session.flush()
    audit.record(session, "user.created", actor, workspace_id=None,
                 target_type="user", target_id=str(user.id))
    return user


def disable_user(session: Session, user: User, actor: Actor) -> User:
    """A disabled user's keys authenticate nothing and their tokens stop at once."""
    if user.status == UserStatus.DISABLED:
        return user
    user.status = UserStatus.DISABLED.value
    user.disabled_at = utcnow()
    audit_in_each_workspace(session, "user.disabled", user, actor)
    session.flush()
    return user


def enable_user(session: Session, user: User, actor: Actor) -> User:
    """Undo `disable_user`: the user's keys authenticate again (their revoked keys stay
    revoked; tokens issued before the disable work again until they expire)."""
    if user.status == UserStatus.ACTIVE:
        return user
    user.status = UserStatus.ACTIVE.value
    user.disabled_at = None
    audit_in_each_workspace(session, "user.enabled", user, actor)
    session.flush()
    return user


def audit_in_each_workspace(session: Session, action: str, user: User, actor: Actor,
                            details: dict[str, object] | None = None) -> None:
    """One event per workspace of `user` (each workspace's trail shows it), or one without a
    workspace for a user in none."""
    for workspace_id in [m.workspace_id for m in user.memberships] or [None]:
        audit.record(session, action, actor, workspace_id=workspace_id, target_type="user",
                     target_id=str(user.id), details=details)


def list_users(session: Session, *, status: str | None = None) -> list[User]:
    """Every user by email, each with their memberships and workspaces (two statements)."""
    from sqlalchemy.orm import selectinload

    query = (select(User).options(selectinload(User.memberships)
                                  .joinedload(Membership.workspace))
             .order_by(User.email))
    if status is not None:
        if status not in {s.value for s in UserStatus}:
            raise InvalidInput("status must be one of active, disabled", field="status")
        query = query.where(User.status == status)
    return list(session.scalars(query))


@dataclass(frozen=True, slots=True)
class WorkspaceSummary:
    workspace: Workspace
    owners: list[str]  # emails
    members: int  # memberships, owners included
    active_keys: int  # neither revoked nor expired


def summarize_workspaces(session: Session, slug: str | None = None) -> list[WorkspaceSummary]:
    """Every workspace (or the one `slug`) by slug, with its owners and counts."""
    now = utcnow()
    query = select(Workspace).order_by(Workspace.slug)
    if slug is not None:
        query = query.where(Workspace.id == get_workspace(session, slug).id)
    workspaces = list(session.scalars(query))
    ids = [w.id for w in workspaces]
    members = dict(session.execute(
        select(Membership.workspace_id, func.count()).where(Membership.workspace_id.in_(ids))
        .group_by(Membership.workspace_id)).all())
    keys = dict(session.execute(
        select(ApiKey.workspace_id, func.count()).where(
            ApiKey.workspace_id.in_(ids), ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
        .group_by(ApiKey.workspace_id)).all())
    owners: dict[int, list[str]] = {}
    for workspace_id, email in session.execute(
            select(Membership.workspace_id, User.email).join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id.in_(ids), Membership.role == Role.OWNER.value)
            .order_by(User.email)):
        owners.setdefault(workspace_id, []).append(email)
    return [WorkspaceSummary(workspace=w, owners=owners.get(w.id, []),
                             members=members.get(w.id, 0), active_keys=keys.get(w.id, 0))
            for w in workspaces]


def create_workspace(
    session: Session, slug: str, owner: User, actor: Actor, name: str | None = None
) -> Workspace:
    slug = (slug or "").strip()
    if not _SLUG.match(slug):
        raise InvalidInput(
            f"invalid workspace slug {slug!r}: use 1-63 lowercase letters, digits and hyphens",
            field="slug",
        )
    if session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        raise Conflict(f"workspace {slug!r} already exists", field="slug")
    if not owner.is_active:
        raise InvalidInput(f"user {owner.email} is disabled", field="owner")
    workspace = Workspace(slug=slug, name=(name or slug)[:200], created_at=utcnow(),
                          max_key_lifetime_days=DEFAULT_MAX_KEY_LIFETIME_DAYS)
    session.add(workspace)
    session.flush()
    session.add(Membership(user_id=owner.id, workspace_id=workspace.id,
                           role=Role.OWNER.value, created_at=utcnow()))
    audit.record(session, "workspace.created", actor, workspace_id=workspace.id,
                 target_type="workspace", target_id=str(workspace.id),
                 details={"slug": slug, "owner": owner.id})
    session.flush()
    return workspace


def add_member(
    session: Session, workspace: Workspace, user: User, role: str, actor: Actor
) -> Membership:
    parsed = parse_role(role)
    if not user.is_active:
        raise InvalidInput(f"user {user.email} is disabled", field="email")
    if get_membership(session, workspace, user) is not None:
        raise Conflict(f"{user.email} is already a member of {workspace.slug}", field="email")
    membership = Membership(user_id=user.id, workspace_id=workspace.id, role=parsed.value,
                            created_at=utcnow())
    session.add(membership)
    session.flush()
    audit.record(session, "member.added", actor, workspace_id=workspace.id,
                 target_type="user", target_id=str(user.id), details={"role": parsed.value})
    webhooks.emit(session, "member.added", workspace.id,
                  {"user_id": str(user.id), "email": user.email, "role": parsed.value})
    return membership


def _owner_count(session: Session, workspace_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Membership).where(
            Membership.workspace_id == workspace_id, Membership.role == Role.OWNER.value
        )
    ) or 0


def _lock_workspace(session: Session, workspace_id: int) -> None:
    """Serialise owner changes of one workspace so two demotions cannot both pass."""
    begin_write(session)
    session.execute(
        select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
    )


def change_role(
    session: Session, membership: Membership, role: str, actor: Actor
) -> Membership:
    parsed = parse_role(role)
    if membership.role == parsed.value:
        return membership
    _lock_workspace(session, membership.workspace_id)
    if membership.role == Role.OWNER and _owner_count(session, membership.workspace_id) <= 1:
        raise Conflict("the last owner of a workspace cannot be demoted", field="role")
    old = membership.role
    membership.role = parsed.value
    audit.record(session, "member.role_changed", actor, workspace_id=membership.workspace_id,
                 target_type="user", target_id=str(membership.user_id),
                 details={"from": old, "to": parsed.value})
    session.flush()
    return membership


def transfer_ownership(session: Session, workspace: Workspace, current_owner: User,
                       new_owner: User, actor: Actor, *, keep_as: str = "admin"
                       ) -> tuple[Membership, Membership]:
    """Make `new_owner` (already a member) an owner, then move `current_owner` (an owner) to
    `keep_as` (admin, member, or owner to stay one too). The last-owner rule holds at every
    step: the workspace never has no owner. Audited as member.role_changed events."""
    if current_owner.id == new_owner.id:
        raise InvalidInput("the current and the new owner are the same user", field="to")
    parse_role(keep_as)
    source = get_membership(session, workspace, current_owner)
    if source is None or source.role != Role.OWNER:
        raise Conflict(f"{current_owner.email} is not an owner of {workspace.slug}",
                       field="from")
    target = get_membership(session, workspace, new_owner)
    if target is None:
        raise Conflict(f"{new_owner.email} is not a member of {workspace.slug}; add them "
                       "first", field="to")
    if new_owner.status != UserStatus.ACTIVE:
        raise InvalidInput(f"user {new_owner.email} is disabled", field="to")
    change_role(session, target, Role.OWNER.value, actor)
    change_role(session, source, keep_as, actor)
    return source, target


def remove_member(session: Session, membership: Membership, actor: Actor) -> int:
    """Remove a member; their keys in the workspace are revoked at once. Returns that count."""
    _lock_workspace(session, membership.workspace_id)
    if membership.role == Role.OWNER and _owner_count(session, membership.workspace_id) <= 1:
        raise Conflict("the last owner of a workspace cannot be removed", field="user")
    from app.services.keys import revoke_keys_of_member  # keys depend on accounts, not back

    revoked = revoke_keys_of_member(session, membership.workspace_id, membership.user_id, actor)
    audit.record(session, "member.removed", actor, workspace_id=membership.workspace_id,
                 target_type="user", target_id=str(membership.user_id),
                 details={"role": membership.role, "keys_revoked": revoked})
    webhooks.emit(session, "member.removed", membership.workspace_id,
                  {"user_id": str(membership.user_id), "role": membership.role,
                   "keys_revoked": revoked})
    session.delete(membership)
    session.flush()
    return revoked


def update_policy(
    session: Session,
    workspace: Workspace,
    actor: Actor,
    *,
    max_key_lifetime_days: int | type[Ellipsis] | None = ...,
    default_key_lifetime_days: int | type[Ellipsis] | None = ...,
    token_ttl_seconds: int | type[Ellipsis] | None = ...,
    token_format: str | type[Ellipsis] = ...,
    max_token_ttl: int = 86400,
    jwt_available: bool = False,
) -> Workspace:
    """Change workspace policy; `...` leaves a field as it is, None clears it.

    token_format "jwt" needs `jwt_available` (the server can sign: it has a signing-key
    encryption key), so a workspace never asks for tokens nobody can issue.
    """
    changes: dict[str, object] = {}
    new_format = workspace.token_format if token_format is ... else token_format
    if new_format not in tuple(TokenFormat):
        raise InvalidInput(f"token_format must be one of {', '.join(TokenFormat)}",
                           field="token_format")
    if (new_format == TokenFormat.JWT and workspace.token_format != TokenFormat.JWT
            and not jwt_available):
        raise InvalidInput("this server cannot issue JWT access tokens: it has no "
                           "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY", field="token_format")
    new_max = (workspace.max_key_lifetime_days
               if max_key_lifetime_days is ... else max_key_lifetime_days)
    new_default = (workspace.default_key_lifetime_days
                   if default_key_lifetime_days is ... else default_key_lifetime_days)
    new_ttl = workspace.token_ttl_seconds if token_ttl_seconds is ... else token_ttl_seconds
    for field, value, upper in (
        ("max_key_lifetime_days", new_max, MAX_POLICY_DAYS),
        ("default_key_lifetime_days", new_default, MAX_POLICY_DAYS),
        ("token_ttl_seconds", new_ttl, max_token_ttl),
    ):
        if value is not None and (isinstance(value, bool) or not 1 <= value <= upper):
            raise InvalidInput(f"{field} must be between 1 and {upper}", field=field)
    if new_max is not None and new_default is not None and new_default > new_max:
        raise InvalidInput("default_key_lifetime_days cannot exceed max_key_lifetime_days",
                           field="default_key_lifetime_days")
    for field, value in (("max_key_lifetime_days", new_max),
                         ("default_key_lifetime_days", new_default),
                         ("token_ttl_seconds", new_ttl), ("token_format", new_format)):
        if getattr(workspace, field) != value:
            changes[field] = {"from": getattr(workspace, field), "to": value}
            setattr(workspace, field, value)
    if changes:
        audit.record(session, "workspace.policy_changed", actor, workspace_id=workspace.id,
                     target_type="workspace", target_id=str(workspace.id), details=changes)
        session.flush()
    return workspace

