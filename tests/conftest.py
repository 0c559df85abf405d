"""Test fixtures: a migrated database per test on SQLite and PostgreSQL, factories, servers."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # tests talk plain HTTP on loopback

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("KEYMINT_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgres"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError("CI=true but KEYMINT_TEST_DATABASE_URL is not set")
    if PG_URL:
        try:
            engine = create_engine(PG_URL)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:
            if IN_CI:
                raise pytest.UsageError(f"CI=true but PostgreSQL is unreachable: {exc}") from exc


def _test_db_name() -> str:
    """Unique per checkout and xdist worker, so parallel runs never drop each other's DB."""
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    return f"keymint_test_{checkout}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "KEYMINT_RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "keymint.sqlite3"
    _migrate(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need KEYMINT_TEST_DATABASE_URL (set by .ci/run)")
    base = make_url(PG_URL)
    name = _test_db_name()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    _migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_PG_TABLES = ("audit_events, audit_seals, access_tokens, key_secrets, api_keys, legacy_keys, "
              "memberships, workspaces, users")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database for this test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "keymint.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(text(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'")).scalar()
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return {"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True,
            "KEYMINT_RATELIMIT_ENABLED": False}


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    from app import create_app
    from app.extensions import db

    application = create_app(app_config)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@dataclass
class KeyHandle:
    client_id: str
    secret: str
    workspace: str
    email: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)


class Factory:
    """Builds users, workspaces and keys through the services, committing each step."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def user(self, email: str | None = None) -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        email = email or f"user{self._next()}@example.com"
        with self.app.app_context():
            accounts.create_user(db.session, email, Actor.cli())
            db.session.commit()
        return email

    def workspace(self, owner: str | None = None, slug: str | None = None, **policy: Any) -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        owner = owner or self.user()
        slug = slug or f"ws{self._next()}"
        with self.app.app_context():
            user = accounts.get_user_by_email(db.session, owner)
            ws = accounts.create_workspace(db.session, slug, user, Actor.cli())
            for name, value in policy.items():
                setattr(ws, name, value)
            db.session.commit()
        return slug

    def member(self, slug: str, email: str | None = None, role: str = "member") -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        email = email or self.user()
        with self.app.app_context():
            ws = accounts.get_workspace(db.session, slug)
            user = accounts.get_user_by_email(db.session, email)
            accounts.add_member(db.session, ws, user, role, Actor.cli())
            db.session.commit()
        return email

    def key(self, slug: str | None = None, email: str | None = None,
            scopes: str = "introspect keys:read", **kwargs: Any) -> KeyHandle:
        from app.extensions import db
        from app.services import accounts, keys
        from app.services.audit import Actor

        if slug is None:
            email = email or self.user()
            slug = self.workspace(owner=email)
        elif email is None:
            email = self.member(slug)
        with self.app.app_context():
            ws = accounts.get_workspace(db.session, slug)
            user = accounts.get_user_by_email(db.session, email)
            created = keys.create_key(db.session, ws, user, Actor.cli(),
                                      name=kwargs.pop("name", "test key"), scopes=scopes,
                                      **kwargs)
            db.session.commit()
            return KeyHandle(created.key.client_id, created.client_secret, slug, email)

    def token(self, client: Any, key: KeyHandle, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        response = client.post("/oauth/token", data=data, auth=key.auth)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]


@pytest.fixture
def factory(app: Any) -> Factory:
    return Factory(app)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `keymint serve` process on loopback, stopped by the fixture that made it."""

    def __init__(self, database_url: str, workers: int = 1, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "KEYMINT_DATABASE_URL": database_url,
                    "KEYMINT_RATELIMIT_ENABLED": "false", "AUTHLIB_INSECURE_TRANSPORT": "1",
                    **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full pipe
        # would block the server's logging (one JSON line per request).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers)],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy within 20 s")

    def stop(self, sig: int = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=5)


@pytest.fixture
def live_server(database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url).start()
    yield server
    server.stop()
