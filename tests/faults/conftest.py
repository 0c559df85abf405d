"""Fault-test fixtures: throwaway PostgreSQL clusters, servers and apps, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Factory, ServerProcess, _migrate  # the tests/ conftest
from tests.faults.support import PgCluster

TEMPLATE_DB = "keymint_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster per test session (per xdist worker), with a migrated template database."""
    cluster = PgCluster()
    try:
        cluster.start()
        cluster.admin(f'CREATE DATABASE "{TEMPLATE_DB}"')
        _migrate(cluster.url(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster for this test alone (e.g. one it takes away and brings back)."""
    cluster = PgCluster()
    try:
        cluster.start()
        cluster.admin('CREATE DATABASE "keymint"')
        _migrate(cluster.url("keymint"))
        yield cluster
    finally:
        cluster.destroy()


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Overrides the suite's database_url: PostgreSQL means a database on pg_cluster."""
    if request.param == "sqlite":
        path = tmp_path / "keymint.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    cluster.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield cluster.url(name)
    # A crashed cluster is destroyed with the session anyway.
    with contextlib.suppress(Exception):
        cluster.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Collects servers a test starts; all are stopped (SIGKILL if they hang) at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop(9)


@pytest.fixture
def app_factory() -> Iterator[Any]:
    """make(url) -> (app, Factory) for databases outside the `app` fixture; disposed after."""
    from app import create_app
    from app.extensions import db

    made: list[Any] = []

    def make(url: str) -> tuple[Any, Factory]:
        application = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True,
                                  "KEYMINT_RATELIMIT_ENABLED": False})
        made.append(application)
        return application, Factory(application)

    yield make
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


