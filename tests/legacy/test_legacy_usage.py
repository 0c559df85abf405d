"""Legacy usage counters: buffered (not a write per request), exact once flushed, daily audit."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from freezegun import freeze_time

from tests.support import (
    SUNSET,
    ServerProcess,
    add_legacy_key,
    audit_events,
    flush,
    legacy_row,
    me,
)

LEGACY = "usage-counted-legacy-key-42"
DAY = SUNSET - timedelta(days=10, hours=12)  # 2025-12-21T11:59:59Z


@pytest.fixture
def legacy_id(app, factory):
    return add_legacy_key(app, factory.workspace(), LEGACY)


def call(client, ip="192.0.2.10", agent="old-sdk/1.0"):
    response = me(client, LEGACY, headers={"User-Agent": agent},
                  environ_base={"REMOTE_ADDR": ip})
    assert response.status_code in (200, 401)
    return response


def test_counters_exact_after_n_requests_and_not_written_per_request(app, client, legacy_id):
    n = 37
    with freeze_time(DAY) as frozen:
        for i in range(n):
            call(client, ip=f"192.0.2.{i % 5}", agent=f"sdk/{i}")
            frozen.tick(timedelta(seconds=1))
    row = legacy_row(app, legacy_id)
    assert row["use_count"] == 0 and row["last_used_at"] is None  # nothing written yet
    assert app.extensions["keymint_legacy_usage"].pending_events == n
    assert flush(app) == n
    row = legacy_row(app, legacy_id)
    assert row["use_count"] == n
    assert row["first_used_at"] == DAY
    assert row["last_used_at"] == DAY + timedelta(seconds=n - 1)
    assert row["last_ip"] == f"192.0.2.{(n - 1) % 5}"
    assert row["last_user_agent"] == f"sdk/{n - 1}"
    assert row["rejected_count"] == 0
    assert flush(app) == 0  # nothing pending: nothing written twice
    assert legacy_row(app, legacy_id)["use_count"] == n


def test_threshold_flushes_at_the_end_of_the_request(app_config, legacy_id, app):
    app.extensions["keymint_legacy_usage"].threshold = 5
    client = app.test_client()
    with freeze_time(DAY):
        for _ in range(12):
            call(client)
    assert legacy_row(app, legacy_id)["use_count"] == 10
    flush(app)
    assert legacy_row(app, legacy_id)["use_count"] == 12


def test_concurrent_requests_are_all_counted(app, legacy_id):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = app.test_client()
            for _ in range(25):
                assert call(client).status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    with freeze_time(DAY):
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    flush(app)
    assert legacy_row(app, legacy_id)["use_count"] == 150


def test_two_processes_add_up_exactly_with_one_audit_event_per_day(app, app_config, legacy_id):
    from app import create_app

    other = create_app(app_config)  # a second worker or node on the same database
    with freeze_time(DAY) as frozen:
        for _ in range(7):
            call(app.test_client())
        frozen.tick(timedelta(minutes=5))
        for _ in range(4):
            call(other.test_client(), ip="198.51.100.7")
        flush(other)
        flush(app)
    row = legacy_row(app, legacy_id)
    assert row["use_count"] == 11
    assert row["first_used_at"] == DAY
    assert row["last_used_at"] == DAY + timedelta(minutes=5)
    assert row["last_ip"] == "198.51.100.7"  # the latest use wins, whatever flushed last
    events = audit_events(app, "legacy.used")
    assert len(events) == 1
    other.extensions["keymint_legacy_usage"].discard()


def test_legacy_used_audit_event_first_use_per_key_per_day(app, client, legacy_id):
    with freeze_time(DAY) as frozen:
        call(client, ip="192.0.2.1")
        frozen.tick(timedelta(hours=1))
        call(client)
        flush(app)
        frozen.tick(timedelta(hours=2))
        call(client)
        flush(app)
        assert len(audit_events(app, "legacy.used")) == 1
        frozen.move_to(DAY.replace(hour=23, minute=59, second=59))
        call(client)
        frozen.move_to(DAY.replace(hour=0, minute=0, second=0) + timedelta(days=1))
        call(client, ip="192.0.2.99")  # same buffer spans midnight: a second day
        flush(app)
    events = audit_events(app, "legacy.used")
    assert len(events) == 2
    first, second = events
    assert first.occurred_at == DAY  # when the first use happened, not when flushed
    assert first.ip == "192.0.2.1"
    assert first.actor_type == "legacy_key" and first.target_id == str(legacy_id)
    assert second.occurred_at == DAY.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    assert second.ip == "192.0.2.99"
    assert legacy_row(app, legacy_id)["use_count"] == 5


def test_rejections_are_counted_and_audited_once_a_day(app, app_config, factory, legacy_id):
    after = SUNSET + timedelta(hours=1)  # 2026-01-01T00:59:59Z
    with freeze_time(after) as frozen:
        for _ in range(3):
            assert call(app.test_client()).status_code == 401
        frozen.tick(timedelta(hours=1))
        call(app.test_client())
        flush(app)
    row = legacy_row(app, legacy_id)
    assert row["rejected_count"] == 4 and row["use_count"] == 0
    assert row["last_rejected_at"] == after + timedelta(hours=1)
    events = audit_events(app, "legacy.rejected_after_sunset")
    assert len(events) == 1
    assert events[0].occurred_at == after
    assert events[0].details == {"reason": "sunset"}


def test_brownout_rejections_are_audited_as_such(app_config, factory):
    from app import create_app

    start = SUNSET - timedelta(days=3)
    app = create_app({**app_config, "KEYMINT_LEGACY_BROWNOUTS":
                      f"{start.isoformat()}/{(start + timedelta(hours=2)).isoformat()}"})
    slug = factory.workspace()
    legacy_id = add_legacy_key(app, slug, LEGACY)
    with freeze_time(start + timedelta(minutes=1)):
        assert call(app.test_client()).status_code == 401
        flush(app)
    assert legacy_row(app, legacy_id)["rejected_count"] == 1
    assert [e.details for e in audit_events(app, "legacy.rejected")] == [
        {"reason": "brownout"}]


def test_a_failed_flush_keeps_its_counts(app, client, legacy_id, monkeypatch):
    from app.services import legacy_usage

    with freeze_time(DAY):
        for _ in range(9):
            call(client)

    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(legacy_usage, "write_batch", broken)
        assert flush(app) == 0
    assert legacy_row(app, legacy_id)["use_count"] == 0
    assert app.extensions["keymint_legacy_usage"].pending_events == 9
    assert flush(app) == 9
    assert legacy_row(app, legacy_id)["use_count"] == 9


def test_periodic_flush_without_traffic(app_config, factory):
    """The background flusher writes pending counts after the interval, with no request."""
    from app import create_app

    app = create_app({**app_config, "KEYMINT_LEGACY_FLUSH_INTERVAL": 1})
    legacy_id = add_legacy_key(app, factory.workspace(), LEGACY)
    with freeze_time(DAY):
        call(app.test_client())
    pause = threading.Event()
    for _ in range(100):  # poll up to ~10 s of real time; the flusher runs every second
        if legacy_row(app, legacy_id)["use_count"] == 1:
            break
        pause.wait(0.1)
    assert legacy_row(app, legacy_id)["use_count"] == 1
    app.extensions["keymint_legacy_usage"].discard()


@pytest.mark.slow
def test_no_count_lost_when_the_server_stops(app, factory, database_url):
    """Counts buffered in a server worker are written when the worker exits (SIGTERM)."""
    legacy_id = add_legacy_key(app, factory.workspace(), LEGACY)
    server = ServerProcess(database_url, env={
        "KEYMINT_LEGACY_SUNSET": "2099-01-01T00:00:00Z",
        "KEYMINT_LEGACY_FLUSH_INTERVAL": "3600",
        "KEYMINT_LEGACY_FLUSH_THRESHOLD": "1000000"}).start()
    try:
        for _ in range(15):
            response = requests.get(server.url + "/api/v1/me", headers={"X-API-Key": LEGACY},
                                    timeout=5)
            assert response.status_code == 200
        assert legacy_row(app, legacy_id)["use_count"] == 0  # still buffered
    finally:
        server.stop()
    assert legacy_row(app, legacy_id)["use_count"] == 15
    assert len(audit_events(app, "legacy.used")) == 1
