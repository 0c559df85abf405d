"""Test fixtures: a migrated database per test on SQLite and PostgreSQL, apps, factories, servers.

Fixtures only; the helpers they are built from are in tests/support.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import (
    IN_CI,
    PG_URL,
    Factory,
    ServerProcess,
    base_config,
    dispose,
    migrate,
    worker_db_name,
)

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # tests talk plain HTTP on loopback


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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "keymint.sqlite3"
    migrate(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A copy of the migrated template for this test alone."""
    path = tmp_path / "keymint.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need KEYMINT_TEST_DATABASE_URL (set by .ci/run)")
    base = make_url(PG_URL)
    name = worker_db_name()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A freshly migrated, empty database for this test, on each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
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
    return base_config(database_url)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    from app import create_app

    application = create_app(app_config)
    yield application
    dispose(application)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def cli(app: Any) -> Callable[..., Any]:
    """cli("keys", "list", ...): run a `keymint` command against `app`; click's Result."""
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
def factory(app: Any) -> Factory:
    return Factory(app)


@pytest.fixture
def app_factory() -> Iterator[Callable[..., tuple[Any, Factory]]]:
    """make(url, **settings) -> (app, Factory): a further app, with its own settings or on a
    database outside the `app` fixture; disposed after the test."""
    from app import create_app

    made: list[Any] = []

    def make(url: str, **settings: Any) -> tuple[Any, Factory]:
        application = create_app(base_config(url, **settings))
        made.append(application)
        return application, Factory(application)

    yield make
    for application in made:
        dispose(application)


@pytest.fixture
def live_server(database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url).start()
    yield server
    server.stop()


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Collects servers a test starts (tests.support.start_server); all are stopped (SIGKILL
    if they hang) at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop(9)
