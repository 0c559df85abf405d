"""GET /api/v1/audit-events: scope, role visibility, filters, errors and cursor pagination."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.services import accounts, audit, audit_chain
from app.services.audit import Actor
from tests.support import bearer, mint, token_response

SCOPES = "audit:read keys:read"


def events(client, token: str, **params) -> list[dict]:
    response = client.get("/api/v1/audit-events", headers=bearer(token), query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["events"]


def walk(client, token: str, between_pages=None, **params) -> list[dict]:
    """Every page, following next_cursor; `between_pages` runs after each page."""
    seen: list[dict] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get("/api/v1/audit-events", headers=bearer(token),
                              query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        seen.extend(body["events"])
        cursor = body["next_cursor"]
        if between_pages:
            between_pages()
        if cursor is None:
            return seen


@pytest.fixture
def team(app, client, factory):
    """Workspace `acme`: owner, admin and two members with keys; workspace `other` beside."""
    owner = factory.user("owner@example.com")
    factory.workspace(owner, slug="acme")
    admin = factory.member("acme", factory.user("admin@example.com"), role="admin")
    alice = factory.member("acme", factory.user("alice@example.com"))
    bob = factory.member("acme", factory.user("bob@example.com"))
    keys = {name: factory.key("acme", email, scopes=SCOPES)
            for name, email in (("owner", owner), ("admin", admin), ("alice", alice),
                                ("bob", bob))}
    keys["alice_noscope"] = factory.key("acme", alice, scopes="keys:read")
    outsider = factory.user("eve@example.com")
    factory.workspace(outsider, slug="other")
    keys["eve"] = factory.key("other", outsider, scopes=SCOPES)
    tokens = {name: mint(client, key) for name, key in keys.items()}
    # A failed authentication against bob's key is an event about bob's key.
    token_response(client, (keys["bob"].client_id, "sk_wrong"))
    with app.app_context():
        ids = {email: accounts.get_user_by_email(db.session, email).id
               for email in (owner, admin, alice, bob, outsider)}
        workspace_ids = {slug: accounts.get_workspace(db.session, slug).id
                         for slug in ("acme", "other")}
    return {"keys": keys, "tokens": tokens, "user_ids": ids, "workspaces": workspace_ids}


def test_requires_a_bearer_token_with_audit_read(client, team):
    assert client.get("/api/v1/audit-events").status_code == 401
    response = client.get("/api/v1/audit-events", headers=bearer("at_garbage"))
    assert response.status_code == 401
    response = client.get("/api/v1/audit-events",
                          headers=bearer(team["tokens"]["alice_noscope"]))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"


def test_admins_and_owners_see_the_whole_workspace_newest_first(client, team):
    acme = str(team["workspaces"]["acme"])
    for who in ("owner", "admin"):
        seen = walk(client, team["tokens"][who], limit=200)
        assert seen, who
        assert {e["workspace_id"] for e in seen} == {acme}
        ids = [int(e["id"]) for e in seen]
        assert ids == sorted(ids, reverse=True)
        actions = {e["action"] for e in seen}
        assert {"workspace.created", "member.added", "key.created", "token.issued",
                "client.auth_failed"} <= actions


def test_never_another_workspaces_events(client, team):
    eve = walk(client, team["tokens"]["eve"], limit=200)
    assert eve and {e["workspace_id"] for e in eve} == {str(team["workspaces"]["other"])}
    acme_keys = {k.client_id for name, k in team["keys"].items() if name != "eve"}
    assert not any(e["target_id"] in acme_keys or e["actor_key"] in acme_keys for e in eve)
    # A filter naming the other workspace's key finds nothing rather than leaking.
    assert events(client, team["tokens"]["eve"], key=team["keys"]["alice"].client_id) == []


def test_members_see_only_events_about_their_own_keys(client, team):
    keys = team["keys"]
    alice_keys = {keys["alice"].client_id, keys["alice_noscope"].client_id}
    seen = walk(client, team["tokens"]["alice"], limit=200)
    assert seen
    for event in seen:
        assert event["actor_key"] in alice_keys or (
            event["target_type"] == "key" and event["target_id"] in alice_keys), event
    assert {"key.created", "token.issued"} <= {e["action"] for e in seen}
    bob = walk(client, team["tokens"]["bob"], limit=200)
    assert "client.auth_failed" in {e["action"] for e in bob}
    assert "client.auth_failed" not in {e["action"] for e in seen}


def test_an_admin_action_on_a_members_key_is_visible_to_that_member(app, client, team):
    with app.app_context():
        from app.services import keys as key_service

        key = key_service.get_key(db.session, team["keys"]["alice_noscope"].client_id)
        key_service.revoke_key(db.session, key, Actor(type="user", id="1", key="key_admin"))
        db.session.commit()
    seen = events(client, team["tokens"]["alice"], action="key.revoked")
    assert [e["target_id"] for e in seen] == [team["keys"]["alice_noscope"].client_id]


def test_the_role_is_read_at_request_time(app, client, team):
    token = team["tokens"]["alice"]
    before = len(walk(client, token, limit=200))
    with app.app_context():
        workspace = accounts.get_workspace(db.session, "acme")
        alice = accounts.get_user_by_email(db.session, "alice@example.com")
        membership = accounts.get_membership(db.session, workspace, alice)
        accounts.change_role(db.session, membership, "admin", Actor.cli())
        db.session.commit()
    promoted = walk(client, token, limit=200)
    assert len(promoted) > before
    assert "member.added" in {e["action"] for e in promoted}
    with app.app_context():
        workspace = accounts.get_workspace(db.session, "acme")
        alice = accounts.get_user_by_email(db.session, "alice@example.com")
        membership = accounts.get_membership(db.session, workspace, alice)
        accounts.change_role(db.session, membership, "member", Actor.cli())
        db.session.commit()
    assert "member.added" not in {e["action"] for e in walk(client, token, limit=200)}


def test_event_shape(client, team):
    event = events(client, team["tokens"]["owner"], action="key.created", limit=1)[0]
    assert set(event) == {"id", "occurred_at", "workspace_id", "actor_type", "actor_id",
                          "actor_key", "action", "target_type", "target_id", "ip",
                          "user_agent", "request_id", "details", "sealed"}
    assert event["occurred_at"].endswith("Z") and len(event["occurred_at"]) == 27
    assert event["target_type"] == "key" and event["target_id"].startswith("key_")
    assert event["sealed"] is False


def test_sealed_flag(app, client, team):
    with app.app_context():
        audit_chain.seal(db.session)
        db.session.commit()
    events = list(walk(client, team["tokens"]["owner"], limit=200))
    assert events and all(e["sealed"] for e in events)


def test_filter_action_exact_and_prefix(client, team):
    token = team["tokens"]["owner"]
    exact = events(client, token, action="token.issued", limit=200)
    assert exact and {e["action"] for e in exact} == {"token.issued"}
    prefix = events(client, token, action="key.", limit=200)
    assert prefix and all(e["action"].startswith("key.") for e in prefix)
    assert events(client, token, action="key", limit=200) == []  # no implicit prefix
    assert events(client, token, action="key.created_", limit=200) == []


def test_filter_actor_and_key(client, team):
    token = team["tokens"]["owner"]
    alice_id = str(team["user_ids"]["alice@example.com"])
    by_alice = events(client, token, actor=alice_id, limit=200)
    assert by_alice and {e["actor_id"] for e in by_alice} == {alice_id}
    cli = events(client, token, actor="cli", limit=200)
    assert cli and {e["actor_type"] for e in cli} == {"system"}
    bob_key = team["keys"]["bob"].client_id
    about_bob = events(client, token, key=bob_key, limit=200)
    assert {e["action"] for e in about_bob} >= {"key.created", "token.issued",
                                                 "client.auth_failed"}
    assert all(e["actor_key"] == bob_key or e["target_id"] == bob_key for e in about_bob)


def test_filter_since_until(app, client, team):
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    workspace_id = team["workspaces"]["acme"]
    with app.app_context():
        for i in range(5):
            with freeze_time(start + timedelta(minutes=i)):
                audit.record(db.session, "test.timed", Actor.cli(), workspace_id=workspace_id,
                             details={"i": i})
        db.session.commit()
    token = team["tokens"]["owner"]
    seen = events(client, token, action="test.timed", since="2031-05-01T12:01:00Z",
                  until="2031-05-01T12:03:00Z")
    assert [e["details"]["i"] for e in seen] == [2, 1]  # since inclusive, until exclusive
    seen = events(client, token, action="test.timed", since="2031-05-01T14:01:00+02:00")
    assert [e["details"]["i"] for e in seen] == [4, 3, 2, 1]


BAD_PARAMETERS = [
    ({"since": "yesterday"}, "since"),
    ({"until": "2030-01-01T00:00:00"}, "until"),  # no offset: rejected, not guessed
    ({"since": "2030-02-01T00:00:00Z", "until": "2030-01-01T00:00:00Z"}, "since"),
    ({"action": "key.*"}, "action"),
    ({"action": "x" * 65}, "action"),
    ({"key": "not-a-key"}, "key"),
    ({"actor": "a" * 65}, "actor"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": "eyJ2IjoxLCJiZWZvcmUiOiJ4In0"}, "cursor"),  # {"v":1,"before":"x"}
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "ten"}, "limit"),
]


def test_bad_parameters_are_400_naming_the_field(client, team):
    for params, field in BAD_PARAMETERS:
        response = client.get("/api/v1/audit-events", headers=bearer(team["tokens"]["owner"]),
                              query_string=params)
        assert response.status_code == 400, params
        body = response.get_json()
        assert body["error"] == "invalid_request" and body["field"] == field, (params, body)


def _add_workspace_events(app, workspace_id: int, n: int, tag: str) -> None:
    with app.app_context():
        for i in range(n):
            audit.record(db.session, "test.page", Actor.cli(), workspace_id=workspace_id,
                         details={"tag": tag, "i": i})
            db.session.commit()


def test_pagination_never_repeats_or_skips_while_events_are_added(app, client, team):
    workspace_id = team["workspaces"]["acme"]
    _add_workspace_events(app, workspace_id, 40, "before")
    token = team["tokens"]["owner"]
    existing = [e["id"] for e in walk(client, token, limit=200)]
    seen = walk(client, token, limit=7,
                between_pages=lambda: _add_workspace_events(app, workspace_id, 3, "during"))
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids))                      # never repeats
    assert ids == existing                                # never skips, same order
    assert [int(i) for i in ids] == sorted((int(i) for i in ids), reverse=True)


def test_pagination_with_a_concurrent_writer(app, client, team):
    workspace_id = team["workspaces"]["acme"]
    _add_workspace_events(app, workspace_id, 30, "before")
    token = team["tokens"]["owner"]
    existing = [e["id"] for e in walk(client, token, limit=200)]
    stop = threading.Event()

    def writer() -> None:
        with app.app_context():
            while not stop.is_set():
                audit.record(db.session, "test.page", Actor.cli(), workspace_id=workspace_id,
                             details={"tag": "concurrent"})
                db.session.commit()
            db.session.remove()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = [e["id"] for e in walk(client, token, limit=5)]
    finally:
        stop.set()
        thread.join(30)
    assert len(seen) == len(set(seen))
    old = [i for i in seen if int(i) <= int(existing[0])]
    assert old == existing  # everything that existed at the start, exactly once, in order
