"""`keymint audit export|seal|verify|prune` and the KEYMINT_AUDIT_LOG mirror."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func, insert, select, text, update

from app.extensions import db
from app.models import AuditEvent
from app.services import audit, audit_query
from app.services.audit import Actor

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)


def record_events(app, n: int, *, workspace_id: int | None = None, start: datetime = T0,
                  step: timedelta = timedelta(hours=1), **fields) -> None:
    with app.app_context():
        for i in range(n):
            with freeze_time(start + i * step):
                audit.record(db.session, fields.get("action", "test.cli"),
                             Actor(type="user", id="7", key="key_k", ip="192.0.2.9",
                                   user_agent=fields.get("user_agent", "curl/8")),
                             workspace_id=workspace_id, target_type="key", target_id="key_t",
                             details={"i": i})
        db.session.commit()


def test_seal_then_verify(app):
    record_events(app, 5)
    sealed = run(app, "audit", "seal")
    assert sealed.exit_code == 0
    assert sealed.stdout.startswith("sealed 5 event(s) in 1 seal(s); chain head ")
    head = sealed.stdout.split()[-1]
    again = run(app, "audit", "seal")
    assert again.stdout == f"sealed 0 event(s) in 0 seal(s); chain head {head}\n"
    verified = run(app, "audit", "verify")
    assert verified.exit_code == 0
    assert "audit chain OK: 1 seal(s), 5 event(s) verified" in verified.stdout
    assert "checked in unkeyed mode (SHA-256)" in verified.stdout
    assert run(app, "audit", "verify", "--anchor", head).exit_code == 0
    report = json.loads(run(app, "audit", "verify", "--json").stdout)
    assert report["ok"] is True and report["head"] == head and report["events"] == 5
    assert (report["mode"], report["key_id"], report["unkeyed_seals"]) == ("unkeyed", None, 1)


def test_verify_exits_1_naming_the_first_bad_event(app):
    record_events(app, 5)
    assert run(app, "audit", "seal", "--max-events", "2").exit_code == 0
    with app.app_context():
        db.session.execute(update(AuditEvent).where(AuditEvent.id == 3)
                           .values(action="key.created"))
        db.session.commit()
    result = run(app, "audit", "verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN: event 3 was modified" in result.stderr
    report = json.loads(run(app, "audit", "verify", "--json").stdout)
    assert report["ok"] is False and report["event_id"] == 3 and report["seal_id"] == 2


def test_verify_with_an_unknown_anchor_fails(app):
    record_events(app, 1)
    run(app, "audit", "seal")
    result = run(app, "audit", "verify", "--anchor", "f" * 64)
    assert result.exit_code == 1 and "anchor" in result.stderr


def test_prune_cli(app):
    record_events(app, 4, start=T0, step=timedelta(days=10))
    run(app, "audit", "seal", "--max-events", "1")
    record_events(app, 1, start=T0)  # unsealed: kept
    with freeze_time(T0 + timedelta(days=100)):
        result = run(app, "audit", "prune", "--before", "2030-01-15T00:00:00Z")
    assert result.exit_code == 0
    assert "pruned 2 event(s) of 2 seal(s) older than 2030-01-15T00:00:00Z" in result.stdout
    assert "1 older event(s) are not sealed yet" in result.stderr
    verified = run(app, "audit", "verify")
    assert verified.exit_code == 0, verified.stderr
    assert "2 event(s) verified, 2 pruned, 1 not yet sealed" in verified.stdout


def test_prune_refuses_a_future_cutoff_and_needs_one(app):
    with freeze_time(T0):
        result = app.test_cli_runner().invoke(
            args=["audit", "prune", "--before", "2030-01-02T00:00:00Z"])
    assert result.exit_code == 2 and "must not be in the future" in result.output
    result = app.test_cli_runner().invoke(args=["audit", "prune", "--before", "soon"])
    assert result.exit_code == 2
    assert app.test_cli_runner().invoke(args=["audit", "prune"]).exit_code == 2


def _workspaces(app, factory) -> tuple[int, int]:
    from app.services import accounts

    factory.workspace(slug="one")
    factory.workspace(slug="two")
    with app.app_context():
        return (accounts.get_workspace(db.session, "one").id,
                accounts.get_workspace(db.session, "two").id)


def test_export_jsonl_filters(app, factory, tmp_path):
    one, two = _workspaces(app, factory)
    record_events(app, 5, workspace_id=one)
    record_events(app, 3, workspace_id=two)
    result = run(app, "audit", "export", "--workspace", "one",
                 "--since", "2030-01-01T01:00:00Z", "--until", "2030-01-01T04:00:00Z")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["details"]["i"] for e in lines] == [1, 2, 3]
    assert {e["workspace_id"] for e in lines} == {str(one)}
    assert lines[0]["occurred_at"] == "2030-01-01T01:00:00.000000Z"
    everything = run(app, "audit", "export").stdout.splitlines()
    ids = [int(json.loads(line)["id"]) for line in everything]
    assert ids == sorted(ids) and len(ids) >= 8  # plus user/workspace events


def test_export_unknown_workspace_is_a_clean_error(app):
    result = app.test_cli_runner().invoke(args=["audit", "export", "--workspace", "nope"])
    assert result.exit_code == 1 and "no workspace" in result.output.lower()


def test_export_csv_to_a_file_neutralises_formulas(app, tmp_path):
    record_events(app, 2, user_agent="=HYPERLINK(\"http://evil\")")
    out = tmp_path / "audit.csv"
    result = run(app, "audit", "export", "--format", "csv", "--output", str(out))
    assert result.exit_code == 0
    assert "exported 2 event(s)" in result.stderr
    assert not (tmp_path / "audit.csv.partial").exists()
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["action"] for r in rows] == ["test.cli", "test.cli"]
    assert rows[0]["user_agent"].startswith("'=HYPERLINK")
    assert json.loads(rows[1]["details"]) == {"i": 1}
    assert rows[0]["sealed"] == "false" and rows[0]["workspace_id"] == ""
    assert list(rows[0]) == list(audit_query.CSV_HEADER)


def test_export_csv_of_nothing_still_has_a_header(app):
    result = run(app, "audit", "export", "--format", "csv", "--since", "2099-01-01T00:00:00Z")
    assert result.stdout.strip().split(",") == list(audit_query.CSV_HEADER)


def test_export_progress_bar_goes_to_stderr(app, tmp_path):
    record_events(app, 3)
    out = tmp_path / "a.jsonl"
    result = run(app, "audit", "export", "--progress", "--output", str(out))
    assert result.exit_code == 0
    assert "exporting audit events" in result.stderr
    assert len(out.read_text().splitlines()) == 3


BULK = 100_000


def _bulk_insert(n: int) -> int:
    """n events straight into the table (fast); returns the size of their text."""
    detail = {"name": "x" * 120, "scopes": ["keys:read", "keys:write"]}
    for start in range(0, n, 10_000):
        db.session.execute(insert(AuditEvent), [
            {"occurred_at": T0 + timedelta(microseconds=i), "actor_type": "user",
             "actor_id": str(i), "actor_key": "key_" + "a" * 24, "action": "token.issued",
             "target_type": "token", "target_id": f"tok_{i:024d}", "ip": "203.0.113.10",
             "user_agent": "bench/1.0", "request_id": f"req{i:020d}", "details": detail}
            for i in range(start, min(n, start + 10_000))])
    db.session.commit()
    return n


def _export_peak_rss(database_url: str, output: Path, *extra: str) -> int:
    """Peak resident memory (bytes) of a real `keymint audit export` process."""
    env = {**os.environ, "KEYMINT_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "audit", "export", "--no-progress",
         "--output", str(output), *extra],
        cwd=Path(__file__).resolve().parent.parent, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    return usage.ru_maxrss * 1024  # KiB on Linux


def test_export_of_100k_events_streams_in_constant_memory(app, database_url, tmp_path):
    """Measured on the real process (RSS), so memory held by the database driver counts
    too: a client-side cursor would keep the whole result in libpq, unseen by tracemalloc.
    """
    with app.app_context():
        _bulk_insert(BULK)
    empty = _export_peak_rss(database_url, tmp_path / "none.jsonl",
                             "--since", "2099-01-01T00:00:00Z")
    out = tmp_path / "export.jsonl"
    full = _export_peak_rss(database_url, out)
    size = out.stat().st_size
    with out.open() as handle:
        assert sum(1 for _ in handle) == BULK
    assert size > 30_000_000
    # Loading the rows (or the text) would grow the process by more than the data size.
    print(f"export peak RSS: {empty} B with 0 rows, {full} B with {BULK} rows ({size} B)")
    assert full - empty < size / 4, (full, empty, size)


def test_export_uses_a_server_side_cursor_on_postgres(app, backend):
    if backend != "postgres":
        pytest.skip("pg_cursors is PostgreSQL's")
    record_events(app, 3)
    with app.app_context():
        rows = audit_query.stream(db.session, audit_query.EventFilter(), batch=1)
        next(rows)
        open_cursors = db.session.execute(text("SELECT count(*) FROM pg_cursors")).scalar()
        assert open_cursors == 1
        assert len(list(rows)) == 2
        db.session.rollback()


@pytest.fixture
def mirror_handler(caplog):
    """caplog's handler on `keymint.audit` itself (the mirror does not propagate)."""
    logger = logging.getLogger("keymint.audit")
    propagate = logger.propagate
    logger.addHandler(caplog.handler)
    logger.propagate = False  # caplog's handler also sits on the root logger
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.propagate = propagate


def test_log_mirror_logs_only_committed_events(app, mirror_handler):
    caplog = mirror_handler
    app.config["KEYMINT_AUDIT_LOG"] = True
    from app.runtime import audit_mirror

    audit_mirror.init_app(app)
    with app.app_context():
        audit.record(db.session, "test.kept", Actor.cli(), workspace_id=None,
                     details={"a": 1})
        db.session.flush()
        db.session.commit()
        audit.record(db.session, "test.dropped", Actor.cli(), workspace_id=None)
        db.session.flush()
        db.session.rollback()
        event_id = db.session.scalar(select(func.max(AuditEvent.id)))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "keymint.audit"]
    assert [line["action"] for line in lines] == ["test.kept"]
    assert lines[0]["id"] == str(event_id) and lines[0]["details"] == {"a": 1}
    assert lines[0]["actor_type"] == "system" and lines[0]["sealed"] is False


def test_log_mirror_is_off_by_default(app, mirror_handler):
    caplog = mirror_handler
    caplog.set_level(logging.INFO, logger="keymint.audit")
    record_events(app, 1)
    assert not [r for r in caplog.records if r.name == "keymint.audit"]
    with app.app_context():  # the event itself was written: only the mirror is off
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_log_mirror_follows_core_appended_events(app, mirror_handler):
    """audit.append() (the hot paths' Core insert) is mirrored exactly like record()."""
    caplog = mirror_handler
    app.config["KEYMINT_AUDIT_LOG"] = True
    from app.runtime import audit_mirror

    audit_mirror.init_app(app)
    with app.app_context():
        audit.append(db.session, "test.appended", Actor.cli(), workspace_id=None,
                     target_type="token", target_id="tok_1", details={"b": 2})
        db.session.commit()
        audit.append(db.session, "test.appended_dropped", Actor.cli(), workspace_id=None)
        db.session.rollback()
        row = db.session.execute(select(AuditEvent).where(
            AuditEvent.action == "test.appended")).scalar_one()
        assert row.details == {"b": 2} and row.seal_id is None
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "test.appended_dropped")) == 0
        event_id = row.id
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "keymint.audit"]
    assert [line["action"] for line in lines] == ["test.appended"]
    assert lines[0]["id"] == str(event_id) and lines[0]["details"] == {"b": 2}
    assert lines[0]["target_id"] == "tok_1" and lines[0]["sealed"] is False


# --- keyed chain (KEYMINT_AUDIT_HMAC_KEY) ---------------------------------------------------

HMAC_KEY = "q3Zk0rJ3rJ8mC2mY9x1bWlK3v5T0yQpZ7uH8sD4fG6A"  # 32 bytes, URL-safe base64
OTHER_HMAC_KEY = "Zm9yZ2VkLWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY"


def test_keyed_chain_detects_a_plain_sha256_rewrite(database_url, app_factory):
    """A writer without the key edits an event and recomputes its hash, its seal and every
    later seal with plain SHA-256: keyed verify fails; unkeyed verify cannot tell."""
    from tests.support import forge_chain_plain

    app, _ = app_factory(database_url, KEYMINT_AUDIT_HMAC_KEY=HMAC_KEY)
    record_events(app, 6)
    assert run(app, "audit", "seal", "--max-events", "2").exit_code == 0
    assert run(app, "audit", "verify").exit_code == 0
    with app.app_context():
        forge_chain_plain(db.session, 1, action="key.revoked")
    result = run(app, "audit", "verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN" in result.stderr and "keyed" in result.stderr
    report = json.loads(run(app, "audit", "verify", "--json").stdout)
    assert report["ok"] is False and report["mode"] == "keyed" and report["seal_id"] == 1

    plain, _ = app_factory(database_url)  # the same kind of rewrite, never keyed
    with plain.app_context():
        db.session.execute(text("UPDATE audit_events SET seal_id = NULL, event_hash = NULL"))
        db.session.execute(text("DELETE FROM audit_seals"))
        db.session.commit()
    assert run(plain, "audit", "seal", "--max-events", "2").exit_code == 0
    with plain.app_context():
        first = db.session.scalar(select(func.min(AuditEvent.id)))
        forge_chain_plain(db.session, first, action="key.created")
    report = json.loads(run(plain, "audit", "verify", "--json").stdout)
    assert report["ok"] is True and report["mode"] == "unkeyed"  # why anchors exist


def test_keyed_chain_fails_clearly_in_the_other_mode_or_with_another_key(database_url,
                                                                        app_factory):
    keyed, _ = app_factory(database_url, KEYMINT_AUDIT_HMAC_KEY=HMAC_KEY)
    record_events(keyed, 3)
    assert run(keyed, "audit", "seal").exit_code == 0
    ok = run(keyed, "audit", "verify")
    assert ok.exit_code == 0 and "checked in keyed mode (HMAC-SHA256, key id " in ok.stdout
    assert json.loads(run(keyed, "audit", "verify", "--json").stdout)["mode"] == "keyed"

    unkeyed, _ = app_factory(database_url)
    result = run(unkeyed, "audit", "verify")
    assert result.exit_code == 1
    assert "seal 1 was sealed in keyed mode" in result.stderr
    assert "KEYMINT_AUDIT_HMAC_KEY" in result.stderr
    sealing = run(unkeyed, "audit", "seal")  # never append an unkeyed seal to a keyed chain
    assert sealing.exit_code != 0 and "KEYMINT_AUDIT_HMAC_KEY" in sealing.output

    other, _ = app_factory(database_url, KEYMINT_AUDIT_HMAC_KEY=OTHER_HMAC_KEY)
    result = run(other, "audit", "verify")
    assert result.exit_code == 1 and "different HMAC key" in result.stderr
    assert HMAC_KEY not in result.output and OTHER_HMAC_KEY not in result.output


def test_switching_an_existing_chain_to_keyed_mode(database_url, app_factory):
    unkeyed, _ = app_factory(database_url)
    record_events(unkeyed, 4)
    assert run(unkeyed, "audit", "seal", "--max-events", "2").exit_code == 0  # seals 1, 2
    keyed, _ = app_factory(database_url, KEYMINT_AUDIT_HMAC_KEY=HMAC_KEY)
    record_events(keyed, 2, start=T0 + timedelta(days=1))
    switched = run(keyed, "audit", "seal")
    assert switched.exit_code == 0 and "--unkeyed-until 2" in switched.stdout
    # The older seals are plain SHA-256: keyed verify accepts them only up to the switch.
    refused = run(keyed, "audit", "verify")
    assert refused.exit_code == 1 and "seal 1 is not keyed" in refused.stderr
    report = json.loads(run(keyed, "audit", "verify", "--unkeyed-until", "2",
                            "--json").stdout)
    assert report["ok"] is True and report["mode"] == "keyed"
    assert (report["unkeyed_seals"], report["keyed_seals"], report["events"]) == (2, 1, 6)
    # An unkeyed verifier still checks the unkeyed prefix and names the first keyed seal.
    assert "seal 3 was sealed in keyed mode" in run(unkeyed, "audit", "verify").stderr
    # Downgrading a keyed seal (rewriting it unkeyed) is not covered by the switch point.
    from tests.support import forge_chain_plain

    with keyed.app_context():
        newest = db.session.scalar(select(func.max(AuditEvent.id)))
        forge_chain_plain(db.session, newest, action="key.created")
    broken = run(keyed, "audit", "verify", "--unkeyed-until", "2")
    assert broken.exit_code == 1 and "seal 3 is not keyed" in broken.stderr


@pytest.mark.parametrize("value", ["short", "!" * 60, "c2hvcnQ"])
def test_an_invalid_audit_hmac_key_is_refused_at_start_without_echoing_it(database_url,
                                                                          value):
    from app import create_app
    from app.config import ConfigError
    from tests.support import base_config

    with pytest.raises(ConfigError) as caught:
        create_app(base_config(database_url, KEYMINT_AUDIT_HMAC_KEY=value))
    assert "KEYMINT_AUDIT_HMAC_KEY" in str(caught.value) and value not in str(caught.value)


def test_the_audit_hmac_key_is_masked_in_the_configuration(database_url, app_factory):
    app, _ = app_factory(database_url, KEYMINT_AUDIT_HMAC_KEY=HMAC_KEY)
    assert HMAC_KEY not in repr(app.config) and HMAC_KEY not in str(dict(app.config))
