"""Legacy static workspace keys: import, lookup, the sunset decision, usage counters, migration."""

from __future__ import annotations

import atexit
import csv
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import IO, Any

from flask import Flask
from sqlalchemy import bindparam, case, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.models import LegacyKey, User, Workspace
from app.models.base import UTCDateTime
from app.services import audit, pagination
from app.services import keys as key_service
from app.services.audit import Actor
from app.services.errors import InvalidInput, NotFound

log = logging.getLogger("keymint.legacy")

TOKEN_TYPE = "legacy_api_key"  # noqa: S105 (a token type name, not a secret)
MAX_KEY_LEN = 512
MAX_LABEL_LEN = 200
CSV_COLUMNS = ("workspace", "key", "label")
_QUERY_CHUNK = 500
_INSERT_CHUNK = 1000


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


def lookup(session: Session, presented: str | None) -> LegacyRow | None:
    """Find a legacy key by the SHA-256 of the presented value (unique index, no plaintext).

    The database compares digests, never the secret itself, so timing tells nothing about
    how close a guess was. Values that cannot be a key are rejected without a query.
    """
    value = normalize_key(presented)
    if value is None:
        return None
    row = session.connection().execute(
        _LOOKUP_QUERY, {"digest": credentials.digest(value)}).first()
    if row is None or not credentials.digests_match(row[7], value):
        return None
    return LegacyRow(id=row[0], workspace_id=row[1], workspace_slug=row[2],
                     workspace_name=row[3], label=row[4], migrated_to=row[5],
                     disabled_at=row[6])


# --- usage counters: buffered in-process, exact, written in batches -------------------------


@dataclass(slots=True)
class _Tally:
    """Uses (or rejections) of one key on one UTC day, not yet written."""

    workspace_id: int
    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    last_ip: str | None = None
    last_user_agent: str | None = None
    first_actor: Actor | None = None
    first_reason: str | None = None

    def add(self, now: datetime, actor: Actor, reason: str | None) -> None:
        self.count += 1
        if self.first_at is None or now < self.first_at:
            self.first_at, self.first_actor, self.first_reason = now, actor, reason
        if self.last_at is None or now >= self.last_at:
            self.last_at, self.last_ip = now, actor.ip
            self.last_user_agent = actor.user_agent

    def merge(self, other: _Tally) -> None:
        if other.first_at is not None and (self.first_at is None or other.first_at < self.first_at):
            self.first_at, self.first_actor = other.first_at, other.first_actor
            self.first_reason = other.first_reason
        if other.last_at is not None and (self.last_at is None or other.last_at >= self.last_at):
            self.last_at, self.last_ip = other.last_at, other.last_ip
            self.last_user_agent = other.last_user_agent
        self.count += other.count


# (kind, legacy key id, UTC day) -> tally; kind is "use" or "reject"
_Batch = dict[tuple[str, int, date], _Tally]

_BUFFERS: weakref.WeakSet[UsageBuffer] = weakref.WeakSet()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


def _typed(value: Any) -> Any:
    return literal(value, type_=UTCDateTime())


class UsageBuffer:
    """Counts legacy uses in memory and writes them in one transaction per flush.

    A request costs a dict update under a lock, not a database write. A flush happens
    at the end of the request that brings `threshold` events pending, every `interval`
    seconds in a background thread (real time, not the app clock), and at process exit. Counts are
    increments (`use_count = use_count + n`), so any number of processes and nodes add up
    exactly; a failed flush puts its counts back.
    """

    def __init__(self, app: Flask, interval: int, threshold: int) -> None:
        self._app = app
        self.interval = interval
        self.threshold = threshold
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: _Batch = {}
        self._pending_events = 0
        # Days for which this process knows the daily audit event is already written.
        self._announced: dict[tuple[str, int], date] = {}
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._stop = threading.Event()
        _BUFFERS.add(self)

    # recording (the hot path) ------------------------------------------------------------

    def record_use(self, row: LegacyRow, now: datetime, actor: Actor) -> None:
        self._record("use", row, now, actor, None)

    def record_rejection(self, row: LegacyRow, now: datetime, actor: Actor, reason: str) -> None:
        self._record("reject", row, now, actor, reason)

    def _record(self, kind: str, row: LegacyRow, now: datetime, actor: Actor,
                reason: str | None) -> None:
        slot = (kind, row.id, now.date())
        with self._lock:
            tally = self._pending.get(slot)
            if tally is None:
                tally = self._pending[slot] = _Tally(row.workspace_id)
            tally.add(now, actor, reason)
            self._pending_events += 1
        self._ensure_thread()

    @property
    def pending_events(self) -> int:
        return self._pending_events

    def flush_due(self) -> bool:
        """The threshold is checked at the end of each request; the interval by the flusher."""
        return self._pending_events >= self.threshold

    def flush_if_due(self) -> None:
        if self.flush_due():
            self.flush()

    # writing -------------------------------------------------------------------------------

    def _take(self) -> _Batch:
        with self._lock:
            batch, self._pending, self._pending_events = self._pending, {}, 0
        return batch

    def _put_back(self, batch: _Batch) -> None:
        with self._lock:
            for slot, tally in batch.items():
                mine = self._pending.get(slot)
                if mine is None:
                    self._pending[slot] = tally
                else:
                    mine.merge(tally)
                self._pending_events += tally.count

    def flush(self) -> int:
        """Write every pending count now; returns how many events were written."""
        with self._write_lock:  # one flush at a time per process keeps lock order simple
            batch = self._take()
            if not batch:
                return 0
            try:
                with self._app.app_context():
                    from app.extensions import db

                    with Session(db.engine) as session, session.begin():
                        announced = _write_batch(session, batch, self._announced)
            except Exception:
                self._put_back(batch)
                log.warning("could not write legacy key usage counters; will retry",
                            exc_info=True)
                return 0
            self._announced.update(announced)
            return sum(t.count for t in batch.values())

    def discard(self) -> None:
        """Drop pending counts and stop the flusher (tests; never in production)."""
        self._take()
        self._stop.set()

    # the periodic flusher ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._thread_pid == pid:
            return
        with self._lock:
            if self._thread is not None and self._thread_pid == pid:
                return
            thread = threading.Thread(target=_flush_periodically,
                                      args=(weakref.ref(self), self._stop, self.interval),
                                      name="keymint-legacy-usage", daemon=True)
            self._thread, self._thread_pid = thread, pid
            thread.start()

    def _after_fork_in_child(self) -> None:
        # Counts of the parent belong to the parent; the child starts empty.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending, self._pending_events = {}, 0
        self._thread = None


def _flush_periodically(ref: weakref.ref[UsageBuffer], stop: threading.Event,
                        interval: int) -> None:
    while not stop.wait(interval):
        buffer = ref()
        if buffer is None:
            return
        if buffer.pending_events:
            buffer.flush()
        del buffer


def flush_all() -> None:
    """Flush every live buffer of this process: at interpreter exit and server worker exit."""
    for buffer in list(_BUFFERS):
        try:
            buffer.flush()
        except Exception:  # exit must go on; the warning says what was lost
            log.exception("legacy usage counters lost at exit")


def _after_fork() -> None:
    for buffer in list(_BUFFERS):
        buffer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(flush_all)


def _write_batch(session: Session, batch: _Batch,
                 announced: dict[tuple[str, int], date]) -> dict[tuple[str, int], date]:
    """Add one flush's counts; write the first-of-the-day audit events. Returns new days."""
    table = LegacyKey.__table__
    c = table.c
    newly: dict[tuple[str, int], date] = {}
    for (kind, legacy_id, day), tally in sorted(batch.items()):
        count_col, last_col = ((c.use_count, c.last_used_at) if kind == "use"
                               else (c.rejected_count, c.last_rejected_at))
        if announced.get((kind, legacy_id)) != day:
            # Claim the day: of all processes, only the first to move last_*_at into this
            # day updates the row, so exactly one audit event per key per day is written.
            claimed = session.execute(
                update(table)
                .where(c.id == legacy_id,
                       or_(last_col.is_(None), last_col < _day_start(day)))
                .values({last_col: _typed(tally.first_at)})
            ).rowcount
            if claimed:
                _audit_first_of_day(session, kind, legacy_id, tally)
            newly[(kind, legacy_id)] = day
        is_newer = or_(last_col.is_(None), last_col <= _typed(tally.last_at))
        values: dict[Any, Any] = {
            count_col: count_col + tally.count,
            last_col: case((is_newer, _typed(tally.last_at)), else_=last_col),
        }
        if kind == "use":
            values[c.first_used_at] = case(
                (or_(c.first_used_at.is_(None), c.first_used_at > _typed(tally.first_at)),
                 _typed(tally.first_at)), else_=c.first_used_at)
            values[c.last_ip] = case((is_newer, literal(tally.last_ip)), else_=c.last_ip)
            values[c.last_user_agent] = case(
                (is_newer, literal((tally.last_user_agent or None) and
                                   tally.last_user_agent[:512])),
                else_=c.last_user_agent)
        session.execute(update(table).where(c.id == legacy_id).values(values))
    return newly


def _audit_first_of_day(session: Session, kind: str, legacy_id: int, tally: _Tally) -> None:
    if kind == "use":
        action, details = "legacy.used", {"first_use_of_day": True}
    elif tally.first_reason == "sunset":
        action, details = "legacy.rejected_after_sunset", {"reason": "sunset"}
    else:
        action, details = "legacy.rejected", {"reason": tally.first_reason}
    actor = tally.first_actor or Actor(type="legacy_key", id=str(legacy_id))
    event = audit.record(session, action, actor, workspace_id=tally.workspace_id,
                         target_type="legacy_key", target_id=str(legacy_id), details=details)
    event.occurred_at = tally.first_at or event.occurred_at


# --- import ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    workspace: str
    key: str
    label: str


class ImportFailed(InvalidInput):
    """Some lines are wrong: nothing was imported. `errors` lists (line, reason)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(errors)} line(s) failed; nothing was imported", field="file")
        self.errors = errors


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    unchanged: int = 0
    per_workspace: dict[str, int] = field(default_factory=dict)


def parse_csv(stream: IO[str]) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """Rows of a `workspace,key,label` CSV (header required, columns in any order).

    Returns the readable rows and the (line, reason) of unreadable ones, so that one
    report lists every problem; a missing or wrong header raises ImportFailed at once.
    """
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFailed([(1, f"unreadable CSV: {exc}")]) from None
    if header is None:
        raise ImportFailed([(1, "the file is empty; expected a header workspace,key,label")])
    names = [h.strip().lower() for h in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        raise ImportFailed([(1, f"the header must name exactly the columns workspace,key,label; "
                                f"got {','.join(names)}")])
    index = {name: names.index(name) for name in CSV_COLUMNS}
    rows: list[ImportRow] = []
    errors: list[tuple[int, str]] = []
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(CSV_COLUMNS):
                errors.append((line, f"expected 3 fields, found {len(fields)}"))
                continue
            rows.append(ImportRow(line=line, workspace=fields[index["workspace"]].strip(),
                                  key=fields[index["key"]],
                                  label=fields[index["label"]].strip()))
    except csv.Error as exc:
        errors.append((reader.line_num, f"unreadable CSV: {exc}"))
    return rows, errors


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def import_keys(session: Session, rows: list[ImportRow], actor: Actor, *,
                progress: Callable[[int], None] | None = None,
                errors: list[tuple[int, str]] | None = None) -> ImportResult:
    """Import legacy keys all-or-nothing; a key already imported for its workspace is a no-op.

    Every line is checked before anything is written; on any error (including `errors`
    found while parsing) ImportFailed lists each failing line with its reason, sorted.
    Keys are stored as SHA-256 digests only.
    """
    advance = progress or (lambda _n: None)
    slugs = sorted({r.workspace for r in rows if r.workspace})
    workspace_ids: dict[str, int] = {}
    for chunk in _chunks(slugs, _QUERY_CHUNK):
        workspace_ids.update((slug, ws_id) for slug, ws_id in session.execute(
            select(Workspace.slug, Workspace.id).where(Workspace.slug.in_(chunk))))
    digests = [credentials.digest(k) if (k := normalize_key(r.key)) else None for r in rows]
    existing: dict[str, int] = {}
    for chunk in _chunks(sorted({d for d in digests if d}), _QUERY_CHUNK):
        existing.update((digest, ws_id) for digest, ws_id in session.execute(
            select(LegacyKey.digest, LegacyKey.workspace_id).where(LegacyKey.digest.in_(chunk))))

    errors = list(errors or [])
    seen: dict[str, int] = {}
    to_insert: list[dict[str, Any]] = []
    result = ImportResult()
    now = utcnow()
    for row, digest in zip(rows, digests, strict=True):
        problems = []
        workspace_id = workspace_ids.get(row.workspace)
        if not row.workspace:
            problems.append("empty workspace")
        elif workspace_id is None:
            problems.append(f"unknown workspace {row.workspace!r}")
        if digest is None:
            if not row.key.strip():
                problems.append("empty key")
            elif len(row.key.strip()) > MAX_KEY_LEN:
                problems.append(f"key longer than {MAX_KEY_LEN} characters")
            else:
                problems.append("key contains non-printable characters")
        elif digest in seen:
            problems.append(f"duplicate key (same key as line {seen[digest]})")
        else:
            seen[digest] = row.line
        if len(row.label) > MAX_LABEL_LEN:
            problems.append(f"label longer than {MAX_LABEL_LEN} characters")
        if digest is not None and digest in existing and workspace_id is not None \
                and existing[digest] != workspace_id:
            problems.append("key was already imported for another workspace")
        if problems:
            errors.append((row.line, "; ".join(problems)))
        elif digest in existing:
            result.unchanged += 1
        else:
            to_insert.append({"workspace_id": workspace_id, "label": row.label,
                              "digest": digest, "imported_at": now, "use_count": 0,
                              "rejected_count": 0})
            result.per_workspace[row.workspace] = result.per_workspace.get(row.workspace, 0) + 1
        advance(1)
    if errors:
        raise ImportFailed(sorted(errors))
    for chunk in _chunks(to_insert, _INSERT_CHUNK):
        session.execute(insert(LegacyKey), chunk)
    if len(to_insert) >= _INSERT_CHUNK and session.get_bind().dialect.name == "postgresql":
        # Fresh statistics: without them the planner takes the grown table for empty and
        # the next import's digest lookups degrade from index probes to scans (~50x).
        session.execute(text("ANALYZE legacy_keys"))
    result.created = len(to_insert)
    for slug, count in sorted(result.per_workspace.items()):
        audit.record(session, "legacy.imported", actor, workspace_id=workspace_ids[slug],
                     target_type="workspace", target_id=str(workspace_ids[slug]),
                     details={"count": count})
    session.flush()
    return result


# --- administration: listing, report, disable, migrate ---------------------------------------


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
    rows = session.scalars(
        select(LegacyKey).where(LegacyKey.workspace_id == workspace.id)
        .order_by(LegacyKey.id).with_for_update()).all()
    for row in rows:
        if row.migrated_to is None:
            if row.disabled_at is not None:
                result.skipped_disabled.append(row)
                continue
            name = row.label.strip() or f"legacy key {row.id}"
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
