"""Migrating legacy keys to API keys: one new key per legacy key, for a workspace or one key."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import LegacyKey, Membership, Role, User, Workspace
from app.services import audit
from app.services import keys as key_service
from app.services.audit import Actor
from app.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.services.legacy import disable_key
from app.transactions import begin_write, locked


@dataclass(frozen=True, slots=True)
class MigratedKey:
    legacy: LegacyKey
    created: key_service.CreatedKey


@dataclass(slots=True)
class MigrationResult:
    migrated: list[MigratedKey] = field(default_factory=list)
    already_migrated: list[LegacyKey] = field(default_factory=list)
    skipped_disabled: list[LegacyKey] = field(default_factory=list)
    disabled: list[LegacyKey] = field(default_factory=list)


def check_owner(session: Session, workspace: Workspace, owner: User, scopes: list[str]) -> None:
    """The new keys' owner is a member of the workspace, and a plain member never gets
    management scopes: the same rule as POST /api/v1/keys (services.access), which an
    operator's migration must not bypass."""
    role = session.scalar(select(Membership.role).where(
        Membership.workspace_id == workspace.id, Membership.user_id == owner.id))
    if role is None:
        raise InvalidInput(f"{owner.email} is not a member of {workspace.slug}", field="user")
    management = [s for s in scopes if s in key_service.MANAGEMENT_SCOPES]
    if management and not Role(role).manages_workspace:
        raise Forbidden(f"{owner.email} is a plain member of {workspace.slug}: only admins and "
                        "owners can hold management scopes (" + " ".join(management) + ")",
                        field="scopes")


def find_key(session: Session, *, key_id: int | None = None,
             workspace: Workspace | None = None, label: str | None = None) -> LegacyKey:
    """One legacy key by its id (of `workspace`, when given) or by its label in `workspace`.

    Labels are not unique: a label that several keys of the workspace share names none of
    them, and the error lists their ids.
    """
    if key_id is not None:
        row = session.get(LegacyKey, key_id)
        if row is None or (workspace is not None and row.workspace_id != workspace.id):
            where = f" in {workspace.slug}" if workspace is not None else ""
            raise NotFound(f"no legacy key {key_id}{where}", field="id")
        return row
    if workspace is None or label is None:
        raise InvalidInput("a legacy key is chosen by its id, or by a workspace and a label")
    rows = session.scalars(select(LegacyKey).where(
        LegacyKey.workspace_id == workspace.id, LegacyKey.label == label)
        .order_by(LegacyKey.id).limit(20)).all()
    if not rows:
        raise NotFound(f"no legacy key labelled {label!r} in {workspace.slug}", field="label")
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows)
        raise Conflict(f"{len(rows)} legacy keys of {workspace.slug} are labelled {label!r} "
                       f"(ids {ids}); choose one by its id", field="label")
    return rows[0]


def migrate_workspace(session: Session, workspace: Workspace, owner: User, actor: Actor, *,
                      scopes: str | list[str] | None = None,
                      disable: bool = False) -> MigrationResult:
    """One new API key (owned by `owner`, same label) per not yet migrated legacy key.

    Re-running is safe: migrated keys are not migrated again. A legacy key that an admin
    disabled before migration is skipped (it was switched off on purpose). With `disable`,
    every migrated legacy key of the workspace stops working at once.
    """
    scope_list = key_service.parse_scopes(scopes)
    check_owner(session, workspace, owner, scope_list)
    result = MigrationResult()
    begin_write(session)  # a concurrent run must see this one's migrated_to, not migrate twice
    rows = session.scalars(
        select(LegacyKey).where(LegacyKey.workspace_id == workspace.id)
        .order_by(LegacyKey.id).with_for_update()).all()
    for row in rows:
        _migrate_row(session, row, workspace, owner, actor, scope_list, disable, result)
    session.flush()
    return result


def migrate_key(session: Session, row: LegacyKey, owner: User, actor: Actor, *,
                scopes: str | list[str] | None = None,
                disable: bool = False) -> MigrationResult:
    """migrate_workspace for one legacy key: its own owner and scopes (a workspace's keys
    often belong to different integrations, run by different people)."""
    scope_list = key_service.parse_scopes(scopes)
    workspace = session.get_one(Workspace, row.workspace_id)
    check_owner(session, workspace, owner, scope_list)
    result = MigrationResult()
    key_row = session.scalars(locked(session, select(LegacyKey)
                                     .where(LegacyKey.id == row.id))).one()
    _migrate_row(session, key_row, workspace, owner, actor, scope_list, disable, result)
    session.flush()
    return result


def _migrate_row(session: Session, row: LegacyKey, workspace: Workspace, owner: User,
                 actor: Actor, scope_list: list[str], disable: bool,
                 result: MigrationResult) -> None:
    if row.migrated_to is None:
        if row.disabled_at is not None:
            result.skipped_disabled.append(row)
            return
        name = row.label.strip()
        if not name or key_service.has_control_characters(name):
            # Imports before labels were checked let control characters in; one such
            # label must not stop the whole workspace's migration.
            name = f"legacy key {row.id}"
        created = key_service.create_key(session, workspace, owner, actor, name=name,
                                         scopes=scope_list)
        row.migrated_to = created.key.client_id
        audit.record(session, "legacy.migrated", actor, workspace_id=workspace.id,
                     target_type="legacy_key", target_id=str(row.id),
                     details={"client_id": created.key.client_id, "owner": owner.id,
                              "scopes": scope_list})
        result.migrated.append(MigratedKey(row, created))
    else:
        result.already_migrated.append(row)
    if disable and disable_key(session, row, actor):
        result.disabled.append(row)
