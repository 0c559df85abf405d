"""Writing one batch of legacy key usage: the counters, and the first-of-the-day audit event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from sqlalchemy import case, literal, or_, update
from sqlalchemy.orm import Session

from app.models import LegacyKey
from app.models.base import UTCDateTime
from app.services import audit
from app.services.audit import Actor


@dataclass(slots=True)
class Tally:
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
            self.last_user_agent = audit.clean_user_agent(actor.user_agent)

    def merge(self, other: Tally) -> None:
        if other.first_at is not None and (self.first_at is None or other.first_at < self.first_at):
            self.first_at, self.first_actor = other.first_at, other.first_actor
            self.first_reason = other.first_reason
        if other.last_at is not None and (self.last_at is None or other.last_at >= self.last_at):
            self.last_at, self.last_ip = other.last_at, other.last_ip
            self.last_user_agent = other.last_user_agent
        self.count += other.count


# (kind, legacy key id, UTC day) -> tally; kind is "use" or "reject"
Batch = dict[tuple[str, int, date], Tally]
# (kind, legacy key id) -> the UTC day whose audit event is known to be written
Announced = dict[tuple[str, int], date]


def _day_start(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


def _typed(value: Any) -> Any:
    return literal(value, type_=UTCDateTime())


def write_batch(session: Session, batch: Batch, announced: Announced) -> Announced:
    """Add one flush's counts; write the first-of-the-day audit events. Returns new days.

    Counts are increments (`use_count = use_count + n`), so any number of processes and
    nodes add up exactly.
    """
    table = LegacyKey.__table__
    c = table.c
    newly: Announced = {}
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


def _audit_first_of_day(session: Session, kind: str, legacy_id: int, tally: Tally) -> None:
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
