"""Migrating legacy keys to API keys: one new key per legacy key of a workspace."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import LegacyKey, User, Workspace
from app.services import audit
from app.services import keys as key_service
from app.services.audit import Actor
from app.services.legacy import disable_key
from app.transactions import begin_write


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


def migrate_workspace(session: Session, workspace: Workspace, owner: User, actor: Actor, *,
                      scopes: str | list[str] | None = None,
                      disable: bool = False) -> MigrationResult:
    """One new API key (owned by `owner`, same label) per not yet migrated legacy key.

    Re-running is safe: migrated keys are not migrated again. A legacy key that an admin
    disabled before migration is skipped (it was switched off on purpose). With `disable`,
    every migrated legacy key of the workspace stops working at once.
    """
    scope_list = key_service.parse_scopes(scopes)
    result = MigrationResult()
    begin_write(session)  # a concurrent run must see this one's migrated_to, not migrate twice
    rows = session.scalars(
        select(LegacyKey).where(LegacyKey.workspace_id == workspace.id)
        .order_by(LegacyKey.id).with_for_update()).all()
    for row in rows:
        if row.migrated_to is None:
            if row.disabled_at is not None:
                result.skipped_disabled.append(row)
                continue
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
    session.flush()
    return result
