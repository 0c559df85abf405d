"""SQL statements per listing request: a small constant, whatever the size of the page.

Counted with a `before_cursor_execute` listener on the engine, around one test-client
request, on both backends. The constant is what each listing needs by design:

- the Bearer check: one lookup joining token, key, owner, secret, membership, workspace,
  which also gives the caller's current role and key scopes (access.principal_of);
- GET /api/v1/keys: the page of keys joined with their owners and workspace, and one
  SELECT ... IN for the secrets of every key on the page (the current secret's hint): 1 + 2 = 3;
- GET /api/v1/audit-events: the page (two statements): 1 + 2 = 3;
- GET /api/v1/members: the memberships joined with their users: 1 + 1 = 2.

Before these were loaded with their pages, key_json and member_json lazy-loaded per row:
GET /api/v1/keys ran 3 + one statement per key + one per distinct owner.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.support import make_team

OWNERS = 10  # keys spread over several owners, so per-owner loads would show too
_serial = itertools.count()
EXPECTED = {"/api/v1/keys": 3, "/api/v1/audit-events": 3, "/api/v1/members": 2}


@contextmanager
def counted(app: Any) -> Iterator[list[str]]:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def remember(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", remember)


def _statements(app: Any, client: Any, path: str, headers: dict[str, str],
                rows: str, expected_rows: int) -> int:
    with counted(app) as seen:
        response = client.get(path, headers=headers, query_string={"limit": 100})
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()[rows]) == expected_rows
    return len(seen)


def _add_members(app: Any, slug: str, n: int) -> list[str]:
    from app.extensions import db
    from app.services import accounts
    from app.services.audit import Actor

    with app.app_context():
        workspace = accounts.get_workspace(db.session, slug)
        emails = []
        for _ in range(n):
            email = f"counted{next(_serial)}@example.com"
            user = accounts.create_user(db.session, email, Actor.cli())
            accounts.add_member(db.session, workspace, user, "member", Actor.cli())
            emails.append(email)
        db.session.commit()
        return emails


def _add_keys(app: Any, slug: str, owners: list[str], n: int) -> None:
    from app.extensions import db
    from app.services import accounts, keys
    from app.services.audit import Actor

    with app.app_context():
        workspace = accounts.get_workspace(db.session, slug)
        users = [accounts.get_user_by_email(db.session, email) for email in owners]
        for i in range(n):
            created = keys.create_key(db.session, workspace, users[i % len(users)],
                                      Actor.cli(), name=f"k{i}", scopes="keys:read")
            if i % 7 == 0:  # some keys with a previous secret still in its grace period
                keys.rotate_secret(db.session, created.key, Actor.cli())
        db.session.commit()


def _audit_count(app: Any, slug: str) -> int:
    from app.extensions import db
    from app.services import accounts, audit_query

    with app.app_context():
        workspace = accounts.get_workspace(db.session, slug)
        return audit_query.count(db.session,
                                 audit_query.EventFilter(workspace_id=workspace.id))


@pytest.fixture
def team(client: Any, factory: Any) -> Any:
    return make_team(client, factory)


def test_keys_page_is_a_constant_number_of_statements(app, client, team):
    headers = team["owner"].headers
    owners = [p.email for p in team.people.values()]
    owners += _add_members(app, team.slug, OWNERS - len(owners))
    _add_keys(app, team.slug, owners, 5 - 3)  # make_team gave each of its 3 people a key
    small = _statements(app, client, "/api/v1/keys", headers, "keys", 5)
    _add_keys(app, team.slug, owners, 100 - 5)
    full = _statements(app, client, "/api/v1/keys", headers, "keys", 100)
    assert small == full <= EXPECTED["/api/v1/keys"]


def test_members_page_is_a_constant_number_of_statements(app, client, team):
    headers = team["owner"].headers
    _add_members(app, team.slug, 5 - 3)
    small = _statements(app, client, "/api/v1/members", headers, "members", 5)
    _add_members(app, team.slug, 100 - 5)
    full = _statements(app, client, "/api/v1/members", headers, "members", 100)
    assert small == full <= EXPECTED["/api/v1/members"]


def test_audit_events_page_is_a_constant_number_of_statements(app, client, team):
    headers = team["owner"].headers
    few = _audit_count(app, team.slug)
    small = _statements(app, client, "/api/v1/audit-events", headers, "events", few)
    _add_keys(app, team.slug, [team["owner"].email], 100)
    full = _statements(app, client, "/api/v1/audit-events", headers, "events", 100)
    assert small == full <= EXPECTED["/api/v1/audit-events"]
