"""Fault-injection machinery: throwaway PostgreSQL clusters to crash, and crashing processes.

PostgreSQL tests here never use the shared server of KEYMINT_TEST_DATABASE_URL: they start
their own cluster (initdb + pg_ctl in a temp dir, loopback TCP on a free port, socket in the
temp dir) so they can stop it with `pg_ctl stop -m immediate` (a crash) and start it again.
Without PostgreSQL server binaries they skip with the reason, except under CI=true (fail).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support import IN_CI, REPO, ServerProcess, free_port, migrate

PG_VERSION_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_VERSION_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_pg_binaries() -> tuple[str, str]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    reason = ("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
              "/usr/lib/postgresql/*/bin; install postgresql-15 to run the fault tests")
    if IN_CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


class PgCluster:
    """A private PostgreSQL cluster in a temp dir; as root it runs as the `postgres` user."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = require_pg_binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="keymint-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root, but there is no 'postgres' user to run initdb")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-sync", "--no-instructions"], timeout=60)

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([*self._as, *argv], capture_output=True, timeout=timeout,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode()[-2000:]}\n"
                               f"{self.log_tail()}")
        return result

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def start(self) -> PgCluster:
        # Durability as in production: fsync and synchronous_commit stay at their default (on).
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=on -c synchronous_commit=on -c max_connections=200")
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                   "-w", "-t", "30", "start"], timeout=40)
        return self

    def stop(self, mode: str = "fast") -> None:
        """mode="immediate" is a crash: no checkpoint, recovery from WAL on the next start."""
        if (self.data / "postmaster.pid").exists():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "30",
                       "stop"], timeout=40)

    def crash(self) -> None:
        self.stop("immediate")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    @classmethod
    @contextlib.contextmanager
    def running(cls, database: str) -> Iterator[PgCluster]:
        """A started cluster holding `database`, migrated; destroyed on the way out."""
        cluster = cls()
        try:
            cluster.start()
            cluster.admin(f'CREATE DATABASE "{database}"')
            migrate(cluster.url(database))
            yield cluster
        finally:
            cluster.destroy()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the directory goes anyway
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_group(server: ServerProcess) -> None:
    """kill -9 the server's whole process group (master and workers) and reap it."""
    assert server.proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, 9)
    server.proc.wait(timeout=10)


def crash_after_commit(database_url: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run tests/faults/crash_after_commit.py; it must die by SIGKILL right after committing."""
    import json

    env = {**os.environ, "KEYMINT_DATABASE_URL": database_url,
           "KEYMINT_RATELIMIT_ENABLED": "false"}
    result = subprocess.run([sys.executable, str(Path(__file__).with_name(
        "crash_after_commit.py")), *args], cwd=REPO, env=env, capture_output=True,
        timeout=timeout, check=False)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])
