"""Legacy static workspace keys: lookup, the sunset/brownout decision, administration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app import credentials
from app.clock import isoformat, utcnow
from app.models import LegacyBrownout, LegacyKey, Workspace
from app.services import audit, pagination, reads
from app.services.audit import Actor
from app.services.errors import InvalidInput, NotFound

TOKEN_TYPE = "legacy_api_key"  # noqa: S105 (a token type name, not a secret)
MAX_KEY_LEN = 512
MAX_LABEL_LEN = 200


# --- policy: may this key be used right now? -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The switch-off schedule, from KEYMINT_LEGACY_* configuration."""

    sunset: datetime
    deprecated_at: datetime
    brownouts: tuple[tuple[datetime, datetime], ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        return cls(sunset=config["KEYMINT_LEGACY_SUNSET"],
                   deprecated_at=config["KEYMINT_LEGACY_DEPRECATED_AT"],
                   brownouts=tuple(config["KEYMINT_LEGACY_BROWNOUTS"]))

    def brownout_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The brownout window containing `now` (half-open: [start, end))."""
        for start, end in self.brownouts:
            if start <= now < end:
                return start, end
        return None


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str  # "accepted", "disabled", "sunset" or "brownout"
    brownout_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """What a request needs about a legacy key, read in one indexed query."""

    id: int
    workspace_id: int
    workspace_slug: str
    workspace_name: str
    label: str
    migrated_to: str | None
    disabled_at: datetime | None


def decide(row: LegacyRow, now: datetime, policy: Policy) -> Decision:
    """Accept or reject a known key: disabled first, then the sunset, then brownouts."""
    if row.disabled_at is not None:
        return Decision(False, "disabled")
    if now >= policy.sunset:
        return Decision(False, "sunset")
    window = policy.brownout_at(now)
    if window is not None:
        return Decision(False, "brownout", brownout_end=window[1])
    return Decision(True, "accepted")


def normalize_key(value: str | None) -> str | None:
    """The key as stored on import: trimmed; None if it cannot be a legacy key at all."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_KEY_LEN or not value.isprintable():
        return None
    return value


# Built once: every introspection of something that is not a keymint token ends up here.
_LOOKUP_QUERY = (
    select(LegacyKey.id, LegacyKey.workspace_id, Workspace.slug, Workspace.name,
           LegacyKey.label, LegacyKey.migrated_to, LegacyKey.disabled_at, LegacyKey.digest)
    .join(Workspace, Workspace.id == LegacyKey.workspace_id)
    .where(LegacyKey.digest == bindparam("digest"))
)


_LOOKUP = reads.HotRead(_LOOKUP_QUERY)


def lookup(session: Session, presented: str | None) -> LegacyRow | None:
    """Find a legacy key by the SHA-256 of the presented value (unique index, no plaintext).

    The database compares digests, never the secret itself, so timing tells nothing about
    how close a guess was. Values that cannot be a key are rejected without a query.
    """
    value = normalize_key(presented)
    if value is None:
        return None
    row = _LOOKUP.first(session, {"digest": credentials.digest(value)})
    if row is None or not credentials.digests_match(row[7], value):
        return None
    return LegacyRow(id=row[0], workspace_id=row[1], workspace_slug=row[2],
                     workspace_name=row[3], label=row[4], migrated_to=row[5],
                     disabled_at=row[6])


# --- administration: listing, report, disable (migration: legacy_migration.py) ----------


def list_keys(session: Session, workspace_id: int, *, after_id: int = 0,
              limit: int = 100) -> list[LegacyKey]:
    return list(session.scalars(
        select(LegacyKey)
        .where(LegacyKey.workspace_id == workspace_id, LegacyKey.id > after_id)
        .order_by(LegacyKey.id).limit(limit)))


@dataclass(frozen=True, slots=True)
class WorkspaceReport:
    workspace: str
    keys: int
    uses: int
    last_used_at: datetime | None
    migrated: int
    disabled: int
    rejections: int
    last_rejected_at: datetime | None


def report(session: Session, workspace_id: int | None = None) -> list[WorkspaceReport]:
    """Per workspace: how many legacy keys, how much they are used, how many migrated."""
    query = (
        select(Workspace.slug, func.count(LegacyKey.id), func.sum(LegacyKey.use_count),
               func.max(LegacyKey.last_used_at), func.count(LegacyKey.migrated_to),
               func.count(LegacyKey.disabled_at), func.sum(LegacyKey.rejected_count),
               func.max(LegacyKey.last_rejected_at))
        .join(Workspace, Workspace.id == LegacyKey.workspace_id)
        .group_by(Workspace.slug).order_by(Workspace.slug))
    if workspace_id is not None:
        query = query.where(LegacyKey.workspace_id == workspace_id)
    return [WorkspaceReport(workspace=slug, keys=keys, uses=int(uses or 0),
                            last_used_at=last_used, migrated=migrated, disabled=disabled,
                            rejections=int(rejections or 0), last_rejected_at=last_rejected)
            for slug, keys, uses, last_used, migrated, disabled, rejections, last_rejected
            in session.execute(query)]


# --- brownouts stored in the database ----------------------------------------------------------


def stored_windows(session: Session, now: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """Stored brownouts that have not ended, by start: what the legacy guard adds to the
    KEYMINT_LEGACY_BROWNOUTS windows."""
    return tuple((start, end) for start, end in session.execute(
        select(LegacyBrownout.starts_at, LegacyBrownout.ends_at)
        .where(LegacyBrownout.ends_at > now).order_by(LegacyBrownout.starts_at)))


def list_brownouts(session: Session, *, include_past: bool = False) -> list[LegacyBrownout]:
    """Stored brownouts by start (by default only those that have not ended)."""
    query = select(LegacyBrownout).order_by(LegacyBrownout.starts_at, LegacyBrownout.id)
    if not include_past:
        query = query.where(LegacyBrownout.ends_at > utcnow())
    return list(session.scalars(query))


def add_brownout(session: Session, start: datetime, end: datetime,
                 actor: Actor) -> LegacyBrownout:
    """Store a brownout [start, end): legacy keys are refused in it (audited)."""
    if not start < end:
        raise InvalidInput("a brownout must end after it starts", field="end")
    if end <= utcnow():
        raise InvalidInput("a brownout must end in the future", field="end")
    row = LegacyBrownout(starts_at=start, ends_at=end, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, "legacy.brownout_added", actor, workspace_id=None,
                 target_type="brownout", target_id=str(row.id),
                 details={"starts_at": isoformat(start), "ends_at": isoformat(end)})
    return row


def remove_brownout(session: Session, brownout_id: int, actor: Actor) -> LegacyBrownout:
    """Delete a stored brownout (a running one ends at once; audited)."""
    row = session.get(LegacyBrownout, brownout_id)
    if row is None:
        raise NotFound(f"no stored brownout {brownout_id}", field="id")
    audit.record(session, "legacy.brownout_removed", actor, workspace_id=None,
                 target_type="brownout", target_id=str(row.id),
                 details={"starts_at": isoformat(row.starts_at),
                          "ends_at": isoformat(row.ends_at)})
    session.delete(row)
    session.flush()
    return row


SUNSET_WARNING_WINDOW = timedelta(days=30)


def sunset_warning(session: Session, sunset: datetime, now: datetime) -> str | None:
    """The start-up warning about KEYMINT_LEGACY_SUNSET, or None: when it has passed while
    legacy keys are still enabled (not disabled), or falls within the next 30 days."""
    if sunset - now > SUNSET_WARNING_WINDOW:
        return None
    enabled = session.scalar(select(func.count(LegacyKey.id))
                             .where(LegacyKey.disabled_at.is_(None))) or 0
    if not enabled:
        return None
    if now >= sunset:
        return (f"KEYMINT_LEGACY_SUNSET ({isoformat(sunset)}) has passed and {enabled} legacy "
                "key(s) are still enabled: every request with one is refused; migrate or "
                "disable them (`keymint legacy report`, `keymint legacy migrate`)")
    left = sunset - now
    return (f"KEYMINT_LEGACY_SUNSET ({isoformat(sunset)}) is {left.days} day(s) "
            f"{left.seconds // 3600} hour(s) away and {enabled} legacy key(s) are still "
            "enabled: migrate them before then (`keymint legacy report`)")


def get_key(session: Session, legacy_id: int, workspace_id: int | None = None) -> LegacyKey:
    row = session.get(LegacyKey, legacy_id)
    if row is None or (workspace_id is not None and row.workspace_id != workspace_id):
        raise NotFound(f"no legacy key {legacy_id}", field="id")
    return row


def disable_key(session: Session, row: LegacyKey, actor: Actor) -> bool:
    """Stop a legacy key now (before the sunset); True if this call changed it."""
    if row.disabled_at is not None:
        return False
    row.disabled_at = utcnow()
    audit.record(session, "legacy.disabled", actor, workspace_id=row.workspace_id,
                 target_type="legacy_key", target_id=str(row.id),
                 details={"label": row.label, "migrated_to": row.migrated_to})
    session.flush()
    return True


# --- the management API's listing -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyKeyPage:
    keys: list[LegacyKey]
    next_cursor: str | None


def page_keys(session: Session, workspace_id: int, *, cursor: str | None = None,
              limit: int = 100) -> LegacyKeyPage:
    """One page of a workspace's legacy keys, oldest first, continuing after `cursor`.

    This listing's cursor is the bare id of the last key of the page, not the opaque form
    of app.services.pagination: its published schema pins it to digits.
    """
    after = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()
                and len(cursor) <= pagination.MAX_ID_DIGITS):
            raise InvalidInput("cursor is not one this server issued", field="cursor")
        after = int(cursor)
    rows, last_id = pagination.cut(
        list_keys(session, workspace_id, after_id=after, limit=limit + 1), limit)
    return LegacyKeyPage(keys=rows, next_cursor=str(last_id) if last_id is not None else None)
