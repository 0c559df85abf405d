"""Purge benchmark (not a test): 1,000,000 expired tokens purged while tokens are issued.

Creates a scratch database on a PostgreSQL server, seeds N expired token rows, starts
`keymint serve`, then measures /oauth/token latency for a while without purge (baseline)
and again while `keymint tokens purge` runs in another process. Prints purge time and
issuance p50/p99/max for both phases. Everything it starts is stopped; the scratch
database is dropped.

    .venv/bin/python bench/purge_bench.py \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    (default URL: $KEYMINT_TEST_DATABASE_URL; --rows 1000000 --batch-size 5000 --threads 2)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str) -> tuple[str, str]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import accounts, keys
    from app.services.audit import Actor

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "KEYMINT_RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade()
        user = accounts.create_user(db.session, "bench@example.com", Actor.cli())
        ws = accounts.create_workspace(db.session, "bench", user, Actor.cli())
        created = keys.create_key(db.session, ws, user, Actor.cli(), name="bench",
                                  scopes="introspect")
        db.session.commit()
        db.engine.dispose()
        return created.key.client_id, created.client_secret


def seed(url: str, rows: int) -> float:
    engine = create_engine(url)
    started = time.perf_counter()
    chunk = 100_000
    with engine.begin() as conn:
        key_id, user_id, ws_id = conn.execute(text(
            "SELECT id, user_id, workspace_id FROM api_keys LIMIT 1")).one()
    for start in range(0, rows, chunk):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO access_tokens (digest, jti, key_id, user_id, workspace_id, "
                "scopes, issued_at, expires_at, revoked_at) "
                "SELECT md5('d' || i) || md5('e' || i), md5('j' || i), :k, :u, :w, "
                "'introspect', now() - interval '30 days', "
                "now() - interval '30 days' + interval '15 minutes', "
                "CASE WHEN i % 10 = 0 THEN now() - interval '29 days' END "
                "FROM generate_series(:a, :b) AS i"),
                {"k": key_id, "u": user_id, "w": ws_id, "a": start + 1,
                 "b": min(start + chunk, rows)})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE access_tokens"))
    engine.dispose()
    return time.perf_counter() - started


class Issuer:
    """Threads minting tokens back to back; records the latency of every request."""

    def __init__(self, base: str, auth: tuple[str, str], threads: int) -> None:
        self.base, self.auth, self.threads = base, auth, threads
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                response = session.post(self.base + "/oauth/token", auth=self.auth,
                                        data={"grant_type": "client_credentials"}, timeout=30)
                elapsed = time.perf_counter() - t0
                with self._lock:
                    if response.status_code == 200:
                        self.latencies.append(elapsed)
                    else:
                        self.errors += 1

    def __enter__(self) -> Issuer:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return "no successful requests"

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

        return (f"{len(lat)} tokens, errors {self.errors}, p50 {pct(0.50):.1f} ms, "
                f"p99 {pct(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms, "
                f"mean {statistics.fmean(lat) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "KEYMINT_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    base = make_url(args.database_url)
    name = f"keymint_purge_bench_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    server = None
    env = {**os.environ, "KEYMINT_DATABASE_URL": url, "KEYMINT_RATELIMIT_ENABLED": "false"}
    try:
        client_id, secret = prepare(url)
        print(f"seeding {args.rows:,} expired tokens (10% also revoked) ...", flush=True)
        print(f"seeded in {seed(url, args.rows):.1f} s", flush=True)

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers)], cwd=REPO, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(base_url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        auth = (client_id, secret)
        with Issuer(base_url, auth, args.threads):
            time.sleep(2)  # warm-up, not measured
        with Issuer(base_url, auth, args.threads) as baseline:
            time.sleep(args.baseline_seconds)
        with Issuer(base_url, auth, args.threads) as during:
            t0 = time.perf_counter()
            purge = subprocess.run(
                [sys.executable, "-m", "app.cli", "tokens", "purge", "--no-progress",
                 "--batch-size", str(args.batch_size)], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=3600, check=True)
            purge_seconds = time.perf_counter() - t0
        print(purge.stdout.strip())
        print(f"purge: {args.rows:,} rows in {purge_seconds:.1f} s "
              f"({args.rows / purge_seconds:,.0f} rows/s, batch {args.batch_size}, "
              "includes process start)")
        print(f"issuance without purge ({args.threads} threads): {baseline.summary()}")
        print(f"issuance during purge  ({args.threads} threads): {during.summary()}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
