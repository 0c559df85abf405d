"""The tamper-evident hash chain over audit events: seal, verify and prune.

A seal claims every event whose `seal_id IS NULL` (oldest id first, at most
`max_events`), hashes each event's canonical content, and links to the previous seal:

    event_hash = H(stable JSON of every field of the event, id and details included)
    events_digest = H("id:event_hash\\n" for each event, in id order)
    seal.hash = H(stable JSON of prev_hash, kind, created_at, counts, event ids,
                  details incl. events_digest and the id ranges)

H is SHA-256 (unkeyed mode) or, given the KEYMINT_AUDIT_HMAC_KEY, HMAC-SHA256 with it
(keyed mode). A keyed seal says so in its details (`mac`, and `key_id`, a fingerprint of the
key), which its own hash covers. Plain SHA-256 is public: anyone who can write the database can
rewrite an event and recompute everything after it, which only an anchor kept elsewhere
catches. A keyed chain cannot be recomputed without the key, and a keyed verifier refuses an
unkeyed seal after the switch point (`unkeyed_until`), so rewriting a seal as unkeyed (a
downgrade) fails too. Once the head is keyed, sealing and pruning need the same key.

Claiming by `seal_id IS NULL` instead of `id > last sealed id` is what keeps a
late-committing row in the chain: PostgreSQL assigns ids at INSERT but the row only
becomes visible at COMMIT, so a row with a small id can appear after a seal has already
covered bigger ids; it is still NULL and the next seal takes it.

Sealers serialise on the chain head (a transaction-scoped advisory lock on PostgreSQL,
the single-writer lock on SQLite); the hot path that writes events never takes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.clock import isoformat_us, utcnow
from app.models import AuditEvent, AuditSeal
from app.models.audit import EVENT_FIELDS
from app.services.errors import Conflict

GENESIS_HASH = "0" * 64
KIND_EVENTS = "events"
KIND_PRUNE = "prune"
HASH_VERSION = 1
MAX_EVENTS_PER_SEAL = 10_000
MAX_EVENTS_PER_PRUNE = 100_000
MAX_SEALS_PER_PRUNE = 1_000
# pg_advisory_xact_lock key for the chain head ("keymint" in ASCII, fits a bigint).
CHAIN_LOCK_KEY = 0x6B65796D696E74
# A keyed seal's details["mac"]; an unkeyed seal has no such entry (every seal before keyed
# mode existed is one).
MAC_HMAC_SHA256 = "hmac-sha256"
MODE_KEYED = "keyed"
MODE_UNKEYED = "unkeyed"

_EVENT_COLUMNS = [getattr(AuditEvent, name) for name in EVENT_FIELDS]


def stable_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_time(moment: datetime) -> str:
    """UTC with microseconds always present, so the text never depends on the value."""
    return isoformat_us(moment)


def event_content(row: Any) -> dict[str, Any]:
    """The hashed content of an event (an ORM object or a result row)."""
    content = {name: getattr(row, name) for name in EVENT_FIELDS}
    content["occurred_at"] = format_time(content["occurred_at"])
    content["details"] = content["details"] or {}
    return content


class ChainKeyMismatch(Conflict):
    """The chain head was sealed with another key (or in keyed mode and no key was given)."""


def _hasher(key: bytes | None) -> Any:
    """SHA-256 (unkeyed) or HMAC-SHA256 with `key`: same interface (update, hexdigest)."""
    return hashlib.sha256() if key is None else hmac.new(key, digestmod=hashlib.sha256)


def _digest(data: bytes, key: bytes | None) -> str:
    hasher = _hasher(key)
    hasher.update(data)
    return hasher.hexdigest()


def key_id(key: bytes) -> str:
    """A public fingerprint naming the key in seals and messages; reveals nothing of it."""
    return hmac.new(key, b"keymint audit chain key id", hashlib.sha256).hexdigest()[:16]


def sealed_with(details: dict[str, Any] | None) -> str | None:
    """The key id a seal was made with, or None for an unkeyed (plain SHA-256) seal."""
    details = details or {}
    if details.get("mac") == MAC_HMAC_SHA256:
        return str(details.get("key_id"))
    return None


def event_hash(row: Any, key: bytes | None = None) -> str:
    return _digest(stable_json({"v": HASH_VERSION, **event_content(row)}), key)


def events_digest(pairs: Iterable[tuple[int, str]], key: bytes | None = None) -> str:
    digest = _hasher(key)
    for event_id, hashed in pairs:
        digest.update(f"{event_id}:{hashed}\n".encode("ascii"))
    return digest.hexdigest()


def seal_hash(seal: Any, key: bytes | None = None) -> str:
    """Hash of a seal row's content (everything but its id and its hash)."""
    return _digest(stable_json({
        "v": HASH_VERSION,
        "prev_hash": seal.prev_hash,
        "kind": seal.kind,
        "created_at": format_time(seal.created_at),
        "event_count": seal.event_count,
        "first_event_id": seal.first_event_id,
        "last_event_id": seal.last_event_id,
        "details": seal.details or {},
    }), key)


def id_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as inclusive [first, last] runs: compact, since ids are mostly dense."""
    runs: list[list[int]] = []
    for event_id in ids:
        if runs and event_id == runs[-1][1] + 1:
            runs[-1][1] = event_id
        else:
            runs.append([event_id, event_id])
    return runs


def _expand(runs: list[list[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


def newest_event_id(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0))) or 0


def lock_chain(session: Session) -> None:
    """Serialise sealers and pruners for the rest of this transaction."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    elif dialect == "sqlite":
        # A write statement (even one matching no row) opens the transaction with SQLite's
        # single writer lock, so the head read below cannot be stale.
        session.execute(update(AuditSeal).where(AuditSeal.id == -1)
                        .values(kind=AuditSeal.kind))
    else:  # pragma: no cover - keymint supports SQLite and PostgreSQL only
        session.execute(select(AuditSeal.id).order_by(AuditSeal.id.desc()).limit(1)
                        .with_for_update())


def head(session: Session) -> AuditSeal | None:
    return session.scalar(select(AuditSeal).order_by(AuditSeal.id.desc()).limit(1))


def check_key(session: Session, key: bytes | None) -> AuditSeal | None:
    """The chain head, after checking that `key` may extend the chain: a keyed chain never
    gets an unkeyed seal or one under another key (that would read as a downgrade or a
    forgery to every verifier). An unkeyed chain may switch to keyed at any seal."""
    latest = head(session)
    head_key = sealed_with(latest.details) if latest is not None else None
    if latest is not None and head_key is not None:
        if key is None:
            raise ChainKeyMismatch(
                f"the audit chain is keyed (seal {latest.id}, HMAC-SHA256 key id {head_key}): "
                "set KEYMINT_AUDIT_HMAC_KEY to extend it")
        if key_id(key) != head_key:
            raise ChainKeyMismatch(
                f"the audit chain head (seal {latest.id}) was sealed with HMAC key id "
                f"{head_key}, but KEYMINT_AUDIT_HMAC_KEY has key id {key_id(key)}")
    return latest


def _new_seal(session: Session, latest: AuditSeal | None, kind: str, count: int,
              first_id: int | None, last_id: int | None, details: dict[str, Any],
              key: bytes | None) -> AuditSeal:
    if key is not None:
        details = {**details, "mac": MAC_HMAC_SHA256, "key_id": key_id(key)}
    seal = AuditSeal(created_at=utcnow(), kind=kind, event_count=count,
                     first_event_id=first_id, last_event_id=last_id,
                     prev_hash=latest.hash if latest else GENESIS_HASH, details=details)
    seal.hash = seal_hash(seal, key)
    session.add(seal)
    session.flush()
    return seal


def seal(session: Session, *, max_events: int = MAX_EVENTS_PER_SEAL,
         up_to_id: int | None = None, key: bytes | None = None) -> AuditSeal | None:
    """Seal up to `max_events` unsealed events (oldest id first); None if there were none.

    Call repeatedly (committing each time) until it returns None to seal a backlog.
    `up_to_id` bounds a run to the events that existed when it started, so a sealer under
    load finishes; an event below it that commits late is still unsealed and the next run
    takes it. `key`: the KEYMINT_AUDIT_HMAC_KEY (keyed mode), or None; ChainKeyMismatch if
    the chain head was sealed otherwise.
    """
    lock_chain(session)
    latest = check_key(session, key)
    query = select(*_EVENT_COLUMNS).where(AuditEvent.seal_id.is_(None))
    if up_to_id is not None:
        query = query.where(AuditEvent.id <= up_to_id)
    rows = session.execute(query.order_by(AuditEvent.id).limit(max_events)).all()
    if not rows:
        return None
    pairs = [(row.id, event_hash(row, key)) for row in rows]
    ids = [event_id for event_id, _ in pairs]
    new = _new_seal(session, latest, KIND_EVENTS, len(pairs), ids[0], ids[-1],
                    {"ranges": id_ranges(ids), "events_digest": events_digest(pairs, key)},
                    key)
    session.execute(update(AuditEvent),
                    [{"id": event_id, "seal_id": new.id, "event_hash": hashed}
                     for event_id, hashed in pairs])
    return new


# --- verification -------------------------------------------------------------------------


@dataclass(slots=True)
class VerifyReport:
    ok: bool = True
    seals: int = 0
    events: int = 0
    pruned_events: int = 0
    unsealed: int = 0
    head_hash: str = GENESIS_HASH
    problem: str | None = None
    seal_id: int | None = None
    event_id: int | None = None
    mode: str = MODE_UNKEYED
    key_id: str | None = None
    keyed_seals: int = 0
    unkeyed_seals: int = 0

    def fail(self, problem: str, *, seal_id: int | None = None,
             event_id: int | None = None) -> VerifyReport:
        self.ok, self.problem, self.seal_id, self.event_id = False, problem, seal_id, event_id
        return self


def _pruned_seal_ranges(session: Session) -> list[tuple[int, int, int]]:
    """(first seal id, last seal id, prune seal id) for every prune record."""
    ranges = []
    for prune_id, details in session.execute(
            select(AuditSeal.id, AuditSeal.details).where(AuditSeal.kind == KIND_PRUNE)):
        first, last = (details or {}).get("seal_ids", [None, None])
        if isinstance(first, int) and isinstance(last, int):
            ranges.append((first, last, prune_id))
    return ranges


def _check_events(session: Session, seal: Any, report: VerifyReport,
                  key: bytes | None) -> bool:
    """Walk one seal's events against its id ranges and hashes; False at the first problem."""
    expected = _expand((seal.details or {}).get("ranges", []))
    pairs: list[tuple[int, str]] = []
    rows = session.execute(
        select(*_EVENT_COLUMNS, AuditEvent.event_hash).where(AuditEvent.seal_id == seal.id)
        .order_by(AuditEvent.id).execution_options(yield_per=2000))
    for row in rows:
        want = next(expected, None)
        if want is not None and want < row.id:
            report.fail(f"event {want} of seal {seal.id} is missing (deleted, or its seal_id "
                        "was changed)", seal_id=seal.id, event_id=want)
            return False
        if want is None or row.id < want:
            report.fail(f"event {row.id} claims seal {seal.id} but that seal did not cover "
                        "it (inserted, or its id was changed)", seal_id=seal.id,
                        event_id=row.id)
            return False
        hashed = event_hash(row, key)
        if row.event_hash != hashed:
            report.fail(f"event {row.id} was modified: its content no longer matches the "
                        f"hash sealed in seal {seal.id}", seal_id=seal.id, event_id=row.id)
            return False
        pairs.append((row.id, hashed))
        report.events += 1
    missing = next(expected, None)
    if missing is not None:
        report.fail(f"event {missing} of seal {seal.id} is missing (deleted, or its seal_id "
                    "was changed)", seal_id=seal.id, event_id=missing)
        return False
    if len(pairs) != seal.event_count or \
            events_digest(pairs, key) != (seal.details or {}).get("events_digest"):
        report.fail(f"seal {seal.id}: its events' stored hashes were rewritten (they no "
                    "longer match the seal)", seal_id=seal.id)
        return False
    return True


_SEAL_COLUMNS = (AuditSeal.id, AuditSeal.created_at, AuditSeal.kind, AuditSeal.event_count,
                 AuditSeal.first_event_id, AuditSeal.last_event_id, AuditSeal.prev_hash,
                 AuditSeal.hash, AuditSeal.details)


def _seals_in_order(session: Session, batch: int = 500) -> Iterator[Any]:
    """Every seal in chain order, read in keyset pages (constant memory, short queries)."""
    after = 0
    while True:
        page = session.execute(select(*_SEAL_COLUMNS).where(AuditSeal.id > after)
                               .order_by(AuditSeal.id).limit(batch)).all()
        yield from page
        if len(page) < batch:
            return
        after = page[-1].id


def _stray_event(session: Session, pruned: list[tuple[int, int, int]]) -> Any:
    """An event pointing at a prune record or at a pruned seal: inserted after the fact."""
    conditions = [AuditSeal.kind == KIND_PRUNE]
    conditions += [AuditEvent.seal_id.between(first, last) for first, last, _ in pruned]
    return session.execute(
        select(AuditEvent.id, AuditEvent.seal_id)
        .join(AuditSeal, AuditSeal.id == AuditEvent.seal_id)
        .where(or_(*conditions)).order_by(AuditEvent.id).limit(1)).first()


def _seal_key(current: Any, key: bytes | None, unkeyed_until: int | None,
              keyed_seen: bool, report: VerifyReport) -> tuple[bool, bytes | None]:
    """(ok, the key to check this seal with); on a mode problem, fails the report."""
    sealed = sealed_with(current.details)
    if sealed is not None:
        if key is None:
            report.fail(f"seal {current.id} was sealed in keyed mode (HMAC-SHA256, key id "
                        f"{sealed}) and cannot be checked without a key: set "
                        "KEYMINT_AUDIT_HMAC_KEY", seal_id=current.id)
            return False, None
        if sealed != report.key_id:
            report.fail(f"seal {current.id} was sealed with a different HMAC key (key id "
                        f"{sealed}; KEYMINT_AUDIT_HMAC_KEY has key id {report.key_id}), or "
                        "its key id was altered", seal_id=current.id)
            return False, None
        report.keyed_seals += 1
        return True, key
    if key is not None and (keyed_seen or unkeyed_until is None or current.id > unkeyed_until):
        report.fail(f"seal {current.id} is not keyed (plain SHA-256) but the chain is checked "
                    "in keyed mode: it was rewritten by someone without the key, or it was "
                    "sealed before the switch to keyed mode (then pass --unkeyed-until with "
                    "the id of the last seal made before the switch)", seal_id=current.id)
        return False, None
    report.unkeyed_seals += 1
    return True, None


def verify(session: Session, *, anchor: str | None = None, key: bytes | None = None,
           unkeyed_until: int | None = None) -> VerifyReport:
    """Walk the whole chain; the report names the first bad seal or event, if any.

    `anchor`: a seal hash recorded earlier (e.g. printed by `audit seal`); the chain must
    still contain it, which detects a truncated or wholesale rewritten chain.
    `key`: check in keyed mode (HMAC-SHA256); then every seal must be keyed with it, except
    seals up to id `unkeyed_until` (those sealed before an existing chain switched to keyed
    mode), which are checked as plain SHA-256. Without a key a keyed seal is a failure.
    """
    report = VerifyReport()
    if key is not None:
        report.mode, report.key_id = MODE_KEYED, key_id(key)
    keyed_seen = False
    pruned = _pruned_seal_ranges(session)
    pruned_hashes: dict[int, str] = {}
    prev_hash, prev_id = GENESIS_HASH, None
    anchor_seen = anchor is None
    for current in _seals_in_order(session):
        if current.prev_hash != prev_hash:
            where = f"seal {prev_id}" if prev_id is not None else "the genesis hash"
            return report.fail(f"seal {current.id} does not link to {where}: a seal was "
                               "deleted, inserted or reordered", seal_id=current.id)
        ok, current_key = _seal_key(current, key, unkeyed_until, keyed_seen, report)
        if not ok:
            return report
        keyed_seen = keyed_seen or current_key is not None
        if not hmac.compare_digest(seal_hash(current, current_key), current.hash):
            return report.fail(f"seal {current.id} was modified: its hash does not match its "
                               "content", seal_id=current.id)
        if current.kind == KIND_EVENTS:
            if any(first <= current.id <= last for first, last, _ in pruned):
                report.pruned_events += current.event_count
                pruned_hashes[current.id] = current.hash
            elif not _check_events(session, current, report, current_key):
                return report
        elif current.kind == KIND_PRUNE:
            details = current.details or {}
            first, last = details.get("seal_ids") or [None, None]
            if (pruned_hashes.get(first) != details.get("first_seal_hash")
                    or pruned_hashes.get(last) != details.get("last_seal_hash")):
                return report.fail(f"prune record {current.id} does not match the seals it "
                                   "says it pruned", seal_id=current.id)
        else:
            return report.fail(f"seal {current.id} has an unknown kind {current.kind!r}",
                               seal_id=current.id)
        anchor_seen = anchor_seen or current.hash == anchor
        prev_hash, prev_id = current.hash, current.id
        report.seals += 1
    report.head_hash = prev_hash
    stray = _stray_event(session, pruned)
    if stray is not None:
        return report.fail(f"event {stray.id} claims seal {stray.seal_id}, whose events were "
                           "pruned (inserted after the fact)", seal_id=stray.seal_id,
                           event_id=stray.id)
    if not anchor_seen:
        return report.fail(f"anchor {anchor} is not in the chain: the chain was truncated "
                           "or rewritten")
    report.unsealed = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.seal_id.is_(None))) or 0
    return report


# --- retention ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PruneResult:
    record: AuditSeal
    seals: int
    events: int


def _pruned_upto(session: Session) -> int:
    """Id of the newest seal whose events were pruned (0 if none): pruning is a prefix."""
    return max((last for _first, last, _ in _pruned_seal_ranges(session)), default=0)


def prune(session: Session, before: datetime, *, max_events: int = MAX_EVENTS_PER_PRUNE,
          key: bytes | None = None) -> PruneResult | None:
    """Delete the events of the oldest seals whose events all occurred before `before`.

    Only sealed events go; whole seals only, oldest first, stopping at the first seal that
    holds an event at or after `before` (or after about `max_events` events or
    MAX_SEALS_PER_PRUNE seals: call again until it returns None).
    The seal rows stay, so the chain still verifies, and a `prune` seal records what went
    (keyed with `key`, as `seal`).
    """
    lock_chain(session)
    latest = check_key(session, key)
    upto = _pruned_upto(session)
    chosen: list[tuple[int, str]] = []
    removed = 0
    first_event: int | None = None
    last_event: int | None = None
    candidates = session.execute(
        select(AuditSeal.id, AuditSeal.hash).where(AuditSeal.kind == KIND_EVENTS,
                                                   AuditSeal.id > upto)
        .order_by(AuditSeal.id).limit(MAX_SEALS_PER_PRUNE)).all()
    for seal_id, hashed in candidates:
        newest, count, low, high = session.execute(
            select(func.max(AuditEvent.occurred_at), func.count(AuditEvent.id),
                   func.min(AuditEvent.id), func.max(AuditEvent.id))
            .where(AuditEvent.seal_id == seal_id)).one()
        if newest is not None and _as_utc(newest) >= before:
            break
        chosen.append((seal_id, hashed))
        removed += count
        if low is not None:
            first_event = low if first_event is None else min(first_event, low)
            last_event = high if last_event is None else max(last_event, high)
        if removed >= max_events:
            break
    if not chosen:
        return None
    first_seal, last_seal = chosen[0][0], chosen[-1][0]
    session.execute(delete(AuditEvent).where(AuditEvent.seal_id.between(first_seal, last_seal))
                    .execution_options(synchronize_session=False))
    record = _new_seal(session, latest, KIND_PRUNE, removed, first_event, last_event, {
        "before": format_time(before),
        "seal_ids": [first_seal, last_seal],
        "seals": len(chosen),
        "first_seal_hash": chosen[0][1],
        "last_seal_hash": chosen[-1][1],
    }, key)
    return PruneResult(record=record, seals=len(chosen), events=removed)


def _as_utc(moment: datetime) -> datetime:
    # func.max() over the column bypasses UTCDateTime on SQLite and may come back naive.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
