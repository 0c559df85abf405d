"""The audit hash chain: sealing, tamper detection, late commits, concurrency and pruning."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import delete, func, insert, select, update

from app.extensions import db
from app.models import AuditEvent, AuditSeal
from app.services import audit, audit_chain
from app.services.audit import Actor

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def add_events(n: int, *, start: datetime = T0, step: timedelta = timedelta(seconds=1),
               action: str = "test.event") -> None:
    """n events through the real record() path, one commit."""
    for i in range(n):
        with freeze_time(start + i * step):
            audit.record(db.session, action, Actor(type="user", id=str(i), key="key_x",
                                                   ip="192.0.2.1", user_agent="pytest/1"),
                         workspace_id=None, target_type="key", target_id=f"key_{i}",
                         details={"n": i, "note": "héllo"})
    db.session.commit()


def seal_all(max_events: int = audit_chain.MAX_EVENTS_PER_SEAL) -> list[AuditSeal]:
    seals = []
    while (sealed := audit_chain.seal(db.session, max_events=max_events)) is not None:
        db.session.commit()
        seals.append(sealed)
    return seals


def verify() -> audit_chain.VerifyReport:
    report = audit_chain.verify(db.session)
    db.session.rollback()
    return report


def tamper(statement: Any, params: dict[str, Any] | None = None) -> None:
    db.session.execute(statement, params or {})
    db.session.commit()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield
        db.session.rollback()


def test_seal_covers_every_event_and_verifies(ctx):
    add_events(10)
    seals = seal_all(max_events=4)
    assert [s.event_count for s in seals] == [4, 4, 2]
    assert seals[0].prev_hash == audit_chain.GENESIS_HASH
    assert seals[1].prev_hash == seals[0].hash and seals[2].prev_hash == seals[1].hash
    assert db.session.scalar(select(func.count()).where(AuditEvent.seal_id.is_(None))) == 0
    report = verify()
    assert report.ok, report.problem
    assert (report.seals, report.events, report.unsealed) == (3, 10, 0)
    assert report.head_hash == seals[-1].hash
    assert audit_chain.seal(db.session) is None  # nothing left: no empty seal


def test_unsealed_events_are_counted_not_failed(ctx):
    add_events(3)
    seal_all()
    add_events(2)
    report = verify()
    assert report.ok and report.unsealed == 2 and report.events == 3


def test_event_hash_covers_microseconds_and_details(ctx):
    add_events(1, start=T0 + timedelta(microseconds=7))
    row = db.session.execute(select(AuditEvent)).scalar_one()
    original = audit_chain.event_hash(row)
    assert audit_chain.event_content(row)["occurred_at"] == "2030-01-01T00:00:00.000007Z"
    row.details = {"n": 0, "note": "hello"}
    assert audit_chain.event_hash(row) != original


@pytest.mark.parametrize("column,value", [
    ("action", "key.created"),
    ("details", {"n": 99}),
    ("actor_id", "999"),
    ("ip", "198.51.100.7"),
])
def test_verify_names_an_updated_event(ctx, column, value):
    add_events(10)
    seal_all(max_events=4)
    tamper(update(AuditEvent.__table__).where(AuditEvent.id == 6).values({column: value}))
    report = verify()
    assert not report.ok
    assert report.event_id == 6 and report.seal_id == 2
    assert "event 6 was modified" in report.problem


def test_verify_names_an_event_whose_time_moved_by_a_microsecond(ctx):
    add_events(10)
    seal_all(max_events=4)
    moved = T0 + timedelta(seconds=5, microseconds=1)
    tamper(update(AuditEvent).where(AuditEvent.id == 6).values(occurred_at=moved))
    report = verify()
    assert not report.ok and report.event_id == 6


def test_verify_names_a_deleted_event(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(delete(AuditEvent).where(AuditEvent.id == 5))
    report = verify()
    assert not report.ok
    assert report.event_id == 5 and report.seal_id == 2
    assert "missing" in report.problem


def test_verify_names_a_deleted_last_event_of_a_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(delete(AuditEvent).where(AuditEvent.id == 8))
    report = verify()
    assert not report.ok and report.event_id == 8


def test_verify_detects_a_swapped_pair(ctx):
    """Rows 5 and 6 exchange everything but their ids (stored hashes included)."""
    add_events(10)
    seal_all(max_events=4)
    columns = [c.name for c in AuditEvent.__table__.columns if c.name != "id"]
    rows = {r.id: r._mapping for r in db.session.execute(
        select(AuditEvent.__table__).where(AuditEvent.id.in_([5, 6])))}
    for this, other in ((5, 6), (6, 5)):
        db.session.execute(update(AuditEvent.__table__).where(AuditEvent.id == this)
                           .values({c: rows[other][c] for c in columns}))
    db.session.commit()
    report = verify()
    assert not report.ok
    assert report.event_id == 5 and "modified" in report.problem


def test_verify_detects_swapped_times(ctx):
    add_events(10)
    seal_all(max_events=4)
    t5, t6 = db.session.execute(select(AuditEvent.occurred_at).where(
        AuditEvent.id.in_([5, 6])).order_by(AuditEvent.id)).scalars().all()
    db.session.execute(update(AuditEvent).where(AuditEvent.id == 5).values(occurred_at=t6))
    db.session.execute(update(AuditEvent).where(AuditEvent.id == 6).values(occurred_at=t5))
    db.session.commit()
    report = verify()
    assert not report.ok and report.event_id == 5


def test_verify_detects_content_and_stored_hash_rewritten_together(ctx):
    add_events(10)
    seal_all(max_events=4)
    row = db.session.get(AuditEvent, 6)
    row.action = "forged.action"
    db.session.flush()
    row.event_hash = audit_chain.event_hash(row)
    db.session.commit()
    report = verify()
    assert not report.ok and report.seal_id == 2
    assert "rewritten" in report.problem


def test_verify_detects_an_event_moved_into_another_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(update(AuditEvent).where(AuditEvent.id == 9).values(seal_id=2))
    report = verify()
    assert not report.ok
    assert report.seal_id == 2 and report.event_id == 9


def test_verify_detects_an_inserted_event_claiming_a_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(delete(AuditEvent).where(AuditEvent.id == 10))  # free an id inside seal 3
    forged = {c.name: v for c, v in zip(
        AuditEvent.__table__.columns,
        db.session.execute(select(AuditEvent.__table__).where(AuditEvent.id == 9)).one(),
        strict=True)}
    forged.update(id=11, seal_id=3, action="forged")
    tamper(insert(AuditEvent.__table__).values(forged))
    report = verify()
    assert not report.ok and report.seal_id == 3 and report.event_id == 10


def test_verify_names_an_edited_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(update(AuditSeal).where(AuditSeal.id == 2).values(event_count=3))
    report = verify()
    assert not report.ok and report.seal_id == 2 and "seal 2 was modified" in report.problem


def test_verify_detects_a_recomputed_seal_by_the_broken_link(ctx):
    add_events(10)
    seal_all(max_events=4)
    seal = db.session.get(AuditSeal, 2)
    seal.details = {**seal.details, "note": "rewritten"}
    seal.hash = audit_chain.seal_hash(seal)
    db.session.commit()
    report = verify()
    assert not report.ok and report.seal_id == 3 and "does not link" in report.problem


def test_verify_detects_a_deleted_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(delete(AuditEvent).where(AuditEvent.seal_id == 2))
    tamper(delete(AuditSeal).where(AuditSeal.id == 2))
    report = verify()
    assert not report.ok and report.seal_id == 3 and "does not link to seal 1" in report.problem


def test_verify_detects_a_deleted_first_seal(ctx):
    add_events(10)
    seal_all(max_events=4)
    tamper(delete(AuditEvent).where(AuditEvent.seal_id == 1))
    tamper(delete(AuditSeal).where(AuditSeal.id == 1))
    report = verify()
    assert not report.ok and report.seal_id == 2 and "genesis" in report.problem


def test_anchor_detects_a_truncated_chain(ctx):
    add_events(10)
    seals = seal_all(max_events=4)
    anchor = seals[-1].hash
    assert audit_chain.verify(db.session, anchor=anchor).ok
    tamper(delete(AuditEvent).where(AuditEvent.seal_id == 3))
    tamper(delete(AuditSeal).where(AuditSeal.id == 3))
    assert verify().ok  # a hash chain alone cannot see its own tail cut off...
    report = audit_chain.verify(db.session, anchor=anchor)
    assert not report.ok and "anchor" in report.problem  # ...an anchor kept elsewhere can


# --- late commits and concurrency ---------------------------------------------------------


def test_a_late_committing_event_is_sealed_by_the_next_seal(app, backend):
    """The PostgreSQL trap: id 1 is assigned first but committed after id 2 was sealed."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer: an insert cannot stay uncommitted beside another")
    with app.app_context():
        engine = db.engine
        with engine.connect() as slow:
            slow.execute(insert(AuditEvent).values(
                occurred_at=T0, actor_type="system", actor_id="slow", action="test.slow",
                details={}))  # id 1, not committed yet
            add_events(1)  # id 2, committed
            first = audit_chain.seal(db.session)
            db.session.commit()
            assert (first.first_event_id, first.last_event_id) == (2, 2)
            slow.commit()
        second = audit_chain.seal(db.session)
        db.session.commit()
        assert second.details["ranges"] == [[1, 1]] and second.prev_hash == first.hash
        assert verify().ok and verify().events == 2


def _in_context(app, work, errors: list[BaseException]) -> None:
    try:
        with app.app_context():
            work()
            db.session.remove()
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_concurrent_writers_and_sealers_lose_nothing(app, backend):
    writers, per_writer = 3, 40
    stop = threading.Event()
    errors: list[BaseException] = []
    seal_counts: list[int] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            audit.record(db.session, "test.concurrent", Actor(type="system", id=f"w{n}"),
                         workspace_id=None, details={"i": i})
            db.session.commit()

    def seal_repeatedly() -> None:
        while not stop.is_set():
            sealed = audit_chain.seal(db.session, max_events=7)
            db.session.commit()
            if sealed is not None:
                seal_counts.append(sealed.event_count)

    sealers = [threading.Thread(target=_in_context, args=(app, seal_repeatedly, errors))
               for _ in range(2)]
    threads = [threading.Thread(target=_in_context, args=(app, lambda n=n: write(n), errors))
               for n in range(writers)]
    for thread in sealers + threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()
    for thread in sealers:
        thread.join(60)
    assert not errors, errors
    with app.app_context():
        while audit_chain.seal(db.session) is not None:
            db.session.commit()
        total = writers * per_writer
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == total
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.seal_id.is_(None))) == 0
        sealed_sum = db.session.scalar(select(func.sum(AuditSeal.event_count)))
        assert sealed_sum == total  # each event counted by exactly one seal
        hashes = db.session.scalars(select(AuditSeal.prev_hash)).all()
        assert len(hashes) == len(set(hashes))  # no fork: no two seals share a parent
        report = verify()
        assert report.ok, report.problem
        assert report.events == total


# --- retention ----------------------------------------------------------------------------


def test_prune_removes_whole_old_seals_and_verify_still_passes(ctx):
    add_events(6, start=T0, step=timedelta(days=1))           # days 0..5
    seal_all(max_events=2)                                    # seals 1:(0,1) 2:(2,3) 3:(4,5)
    add_events(1, start=T0 - timedelta(days=30))              # old but unsealed
    cutoff = T0 + timedelta(days=3)                           # seal 2 holds day 3: keep it
    result = audit_chain.prune(db.session, cutoff)
    db.session.commit()
    assert (result.seals, result.events) == (1, 2)
    record = result.record
    assert record.kind == "prune" and record.event_count == 2
    assert (record.first_event_id, record.last_event_id) == (1, 2)
    assert record.details["seal_ids"] == [1, 1]
    assert record.details["before"] == "2030-01-04T00:00:00.000000Z"
    remaining = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()
    assert remaining == [3, 4, 5, 6, 7]  # the unsealed old event stays
    assert audit_chain.prune(db.session, cutoff) is None  # nothing more before the cutoff
    report = verify()
    assert report.ok, report.problem
    assert (report.events, report.pruned_events, report.unsealed) == (4, 2, 1)

    seal_all()
    result = audit_chain.prune(db.session, T0 + timedelta(days=10))
    db.session.commit()
    assert result.events == 5 and result.record.details["seal_ids"] == [2, 5]
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    report = verify()
    assert report.ok, report.problem
    assert report.pruned_events == 7


def test_prune_in_batches(ctx):
    add_events(6, start=T0, step=timedelta(days=1))
    seal_all(max_events=2)
    first = audit_chain.prune(db.session, T0 + timedelta(days=10), max_events=3)
    db.session.commit()
    second = audit_chain.prune(db.session, T0 + timedelta(days=10), max_events=3)
    db.session.commit()
    assert first.record.details["seal_ids"] == [1, 2]
    assert second.record.details["seal_ids"] == [3, 3]
    assert verify().ok


def test_an_event_slipped_into_a_pruned_seal_is_detected(ctx):
    add_events(4, start=T0, step=timedelta(days=1))
    seal_all(max_events=2)
    audit_chain.prune(db.session, T0 + timedelta(days=2))
    db.session.commit()
    tamper(insert(AuditEvent).values(id=2, occurred_at=T0, actor_type="system",
                                     action="forged", details={}, seal_id=1))
    report = verify()
    assert not report.ok and report.event_id == 2 and "pruned" in report.problem


def test_a_forged_prune_record_breaks_the_chain(ctx):
    add_events(4, start=T0, step=timedelta(days=1))
    seal_all(max_events=2)
    audit_chain.prune(db.session, T0 + timedelta(days=2))
    db.session.commit()
    tamper(update(AuditSeal).where(AuditSeal.kind == "prune")
           .values(details={"seal_ids": [1, 2], "last_seal_hash": "0" * 64}))
    report = verify()
    assert not report.ok and report.seal_id == 3


def test_disabled_auditing_writes_nothing(app):
    app.config["KEYMINT_AUDIT_ENABLED"] = False
    with app.app_context():
        add_events(3)
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    app.config["KEYMINT_AUDIT_ENABLED"] = True  # the same path writes once switched on
    with app.app_context():
        add_events(2)
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 2


def test_a_bounded_seal_run_leaves_newer_events_for_the_next_run(app, factory):
    from sqlalchemy import select

    from app.extensions import db
    from app.models import AuditEvent
    from app.services import audit_chain

    factory.user()
    with app.app_context():
        bound = audit_chain.newest_event_id(db.session)
    factory.user()  # arrives while the run is going on
    with app.app_context():
        while audit_chain.seal(db.session, up_to_id=bound) is not None:
            db.session.commit()
        unsealed = db.session.scalars(select(AuditEvent.id)
                                      .where(AuditEvent.seal_id.is_(None))).all()
        assert unsealed and min(unsealed) > bound
        while audit_chain.seal(db.session) is not None:
            db.session.commit()
        assert db.session.scalar(select(AuditEvent.id)
                                 .where(AuditEvent.seal_id.is_(None))) is None
        assert audit_chain.verify(db.session).ok


# --- keyed mode (HMAC-SHA256) ---------------------------------------------------------------

KEY = b"k" * 32


def test_keyed_seals_use_hmac_and_verify_only_with_that_key(ctx):
    add_events(5)
    sealed = audit_chain.seal(db.session, key=KEY)
    db.session.commit()
    assert sealed.details["mac"] == "hmac-sha256"
    assert sealed.details["key_id"] == audit_chain.key_id(KEY) != audit_chain.key_id(b"x" * 32)
    assert sealed.hash == audit_chain.seal_hash(sealed, KEY) != audit_chain.seal_hash(sealed)
    report = audit_chain.verify(db.session, key=KEY)
    db.session.rollback()
    assert report.ok, report.problem
    assert (report.mode, report.keyed_seals, report.unkeyed_seals, report.events) == \
        ("keyed", 1, 0, 5)
    assert not verify().ok  # no key: it cannot be checked, and says so
    wrong = audit_chain.verify(db.session, key=b"x" * 32)
    db.session.rollback()
    assert not wrong.ok and "different HMAC key" in wrong.problem


@pytest.mark.parametrize("keep_mode_marker", [True, False])
def test_a_plain_sha256_rewrite_of_a_keyed_chain_is_detected(ctx, keep_mode_marker):
    from tests.support import forge_chain_plain

    add_events(6)
    for _ in range(3):
        audit_chain.seal(db.session, max_events=2, key=KEY)
        db.session.commit()
    forge_chain_plain(db.session, 3, keep_mode_marker=keep_mode_marker, action="key.created")
    report = audit_chain.verify(db.session, key=KEY)
    db.session.rollback()
    assert not report.ok and report.seal_id == 2
    assert ("was modified" if keep_mode_marker else "is not keyed") in report.problem


def test_keyed_prune_keeps_the_chain_verifiable(ctx):
    add_events(4, start=T0)
    audit_chain.seal(db.session, max_events=2, key=KEY)
    db.session.commit()
    audit_chain.seal(db.session, max_events=2, key=KEY)
    db.session.commit()
    with freeze_time(T0 + timedelta(days=30)):
        result = audit_chain.prune(db.session, T0 + timedelta(days=1), key=KEY)
        db.session.commit()
    assert result is not None and result.record.details["mac"] == "hmac-sha256"
    report = audit_chain.verify(db.session, key=KEY)
    db.session.rollback()
    assert report.ok, report.problem
    with pytest.raises(audit_chain.ChainKeyMismatch):
        audit_chain.prune(db.session, T0 + timedelta(days=1))
    db.session.rollback()
