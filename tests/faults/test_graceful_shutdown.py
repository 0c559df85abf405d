"""SIGTERM: in-flight requests finish and are committed; shutdown flushes run after them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.support import REPO, ServerProcess, introspect, start_server, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]


class WriteLock:
    """Holds the database's write lock on the key row from outside keymint, so a token
    request blocks inside its transaction until release() — a slow request, for real."""

    def __init__(self, database_url: str, client_id: str) -> None:
        self.url = database_url
        if database_url.startswith("sqlite"):
            self.conn = sqlite3.connect(database_url.removeprefix("sqlite:///"),
                                        isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")  # keymint's busy_timeout is 5 s
            self.engine = None
        else:
            self.engine = create_engine(database_url)
            self.conn = self.engine.connect()
            self.conn.execute(text("SELECT id FROM api_keys WHERE client_id = :c FOR UPDATE"),
                              {"c": client_id})

    def waiters(self) -> int:
        """PostgreSQL: sessions waiting for a lock (SQLite cannot tell; assume one)."""
        if self.engine is None:
            return 1
        with self.engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE wait_event_type = 'Lock'"))

    def release(self) -> None:
        if self.engine is None:
            self.conn.execute("COMMIT")
            self.conn.close()
        else:
            self.conn.commit()
            self.conn.close()
            self.engine.dispose()


def _slow_token_request(server: ServerProcess, auth) -> tuple[threading.Thread, list]:
    result: list = []

    def run() -> None:
        try:
            result.append(requests.post(server.url + "/oauth/token", auth=auth, timeout=30,
                                        data={"grant_type": "client_credentials"}))
        except requests.RequestException as exc:  # a reset connection is the failure mode
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_sigterm_lets_the_in_flight_request_finish(database_url, factory, servers):
    key = factory.key(scopes="introspect")
    server = start_server(servers, database_url)
    lock = WriteLock(database_url, key.client_id)
    try:
        thread, result = _slow_token_request(server, key.auth)
        assert wait_until(lambda: lock.waiters() >= 1, timeout=10)
        time.sleep(0.3)  # SQLite: give the request time to reach its blocked write
        os.killpg(server.proc.pid, 15)
        time.sleep(1.0)
        assert server.proc.poll() is None  # still draining the blocked request
    finally:
        lock.release()
    thread.join(timeout=30)
    response = result[0]
    assert isinstance(response, requests.Response), response
    assert response.status_code == 200, response.text
    assert server.proc.wait(timeout=20) == 0  # then a clean exit

    restarted = start_server(servers, database_url)
    assert introspect(restarted, key.auth, response.json()["access_token"])["active"] is True


class FlushingServerProcess(ServerProcess):
    def __init__(self, database_url: str, marker: Path, workers: int = 1) -> None:
        super().__init__(database_url, workers=workers,
                         env={"KEYMINT_TEST_FLUSH_MARKER": str(marker)})

    def start(self) -> FlushingServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("serve_with_flush.py")),
             f"127.0.0.1:{self.port}", str(self.workers)], cwd=REPO, env=self.env,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        started = [f'"Started worker-{n}"' for n in range(1, self.workers + 1)]
        if not wait_until(lambda: self._healthy() and all(s in self.output() for s in started),
                          timeout=20):
            self.stop(9)
            raise RuntimeError("flushing server did not become healthy")
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False


def test_registered_flush_runs_after_in_flight_requests(database_url, factory, servers,
                                                        tmp_path):
    key = factory.key(scopes="introspect")
    marker = tmp_path / "flush.log"
    server = FlushingServerProcess(database_url, marker)
    servers.append(server)
    server.start()
    lock = WriteLock(database_url, key.client_id)
    try:
        thread, result = _slow_token_request(server, key.auth)
        assert wait_until(lambda: lock.waiters() >= 1, timeout=10)
        time.sleep(0.3)
        os.killpg(server.proc.pid, 15)
        time.sleep(0.5)
        assert not marker.exists()  # nothing flushed while a request is still in flight
    finally:
        lock.release()
    thread.join(timeout=30)
    assert result[0].status_code == 200
    assert server.proc.wait(timeout=20) == 0
    lines = marker.read_text().splitlines()
    assert len(lines) == 1  # once per worker, after its last request
    assert lines[0].startswith("flushed tokens=1 ")  # saw the in-flight request's commit


def test_ctrl_c_drains_and_flushes_every_worker_once(database_url, factory, servers, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the workers get it
    and, at once, the main process's SIGTERM. Each worker must still flush, in itself."""
    key = factory.key(scopes="introspect")
    marker = tmp_path / "flush.log"
    server = FlushingServerProcess(database_url, marker, workers=2)
    servers.append(server)
    server.start()
    session = requests.Session()
    for _ in range(4):
        response = session.post(server.url + "/oauth/token", auth=key.auth, timeout=10,
                                data={"grant_type": "client_credentials"})
        assert response.status_code == 200
    session.close()
    os.killpg(server.proc.pid, 2)
    assert server.proc.wait(timeout=20) == 0  # well inside the 30 s before workers are killed
    lines = marker.read_text().splitlines()
    pids = {line.rsplit("pid=", 1)[1] for line in lines}
    assert len(lines) == 2 and len(pids) == 2  # once in each worker
    assert str(server.proc.pid) not in pids  # in the workers, not in the main process
    assert all(line.startswith("flushed tokens=4 ") for line in lines)
    assert "Killing" not in server.output()
