"""Fault-test fixtures: throwaway PostgreSQL clusters, with databases on them per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.faults.support import PgCluster

TEMPLATE_DB = "keymint_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster per test session (per xdist worker), with a migrated template database."""
    with PgCluster.running(TEMPLATE_DB) as cluster:
        yield cluster


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster for this test alone (e.g. one it takes away and brings back)."""
    with PgCluster.running("keymint") as cluster:
        yield cluster


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Overrides the suite's database_url: PostgreSQL means a database on pg_cluster."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    cluster.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield cluster.url(name)
    # A crashed cluster is destroyed with the session anyway.
    with contextlib.suppress(Exception):
        cluster.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
