"""/api/v1/workspace: reading the policy, and owners changing it."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from tests.support import ALL_SCOPES, audit_events, bearer, make_team, mint, token_response


def test_get_workspace(client, factory):
    team = make_team(client, factory)
    r = client.get("/api/v1/workspace", headers=team["member"].headers)
    assert r.status_code == 200
    body = r.get_json()
    assert body["slug"] == team.slug
    assert body["max_key_lifetime_days"] == 365 and body["token_ttl_seconds"] is None
    assert body["effective_token_ttl_seconds"] == 900
    assert body["max_token_ttl_seconds"] == 86400
    for scope in ("keys:read", "members:read"):
        token = mint(client, team["member"].key, scope=scope)
        assert client.get("/api/v1/workspace", headers=bearer(token)).status_code == 200
    token = mint(client, team["member"].key, scope="introspect")
    assert client.get("/api/v1/workspace", headers=bearer(token)).status_code == 403


@pytest.mark.parametrize(("role", "status"), [("member", 403), ("admin", 403), ("owner", 200)])
def test_only_owners_change_policy(client, factory, role, status):
    team = make_team(client, factory)
    r = client.patch("/api/v1/workspace", headers=team[role].headers,
                     json={"max_key_lifetime_days": 90})
    assert r.status_code == status
    current = client.get("/api/v1/workspace", headers=team["owner"].headers).get_json()
    assert current["max_key_lifetime_days"] == (90 if status == 200 else 365)


def test_policy_change_is_audited_and_enforced(client, factory, app):
    team = make_team(client, factory, max_key_lifetime_days=None)  # keys that reach 2030
    owner = team["owner"]
    r = client.patch("/api/v1/workspace", headers=owner.headers,
                     json={"max_key_lifetime_days": 30, "default_key_lifetime_days": 10,
                           "token_ttl_seconds": 120})
    assert r.status_code == 200
    assert r.get_json()["effective_token_ttl_seconds"] == 120
    [event] = audit_events(app, "workspace.policy_changed")
    assert event.details["max_key_lifetime_days"] == {"from": None, "to": 30}
    assert (event.actor_id, event.actor_key) == (owner.user_id, owner.key.client_id)
    with freeze_time("2030-01-01T00:00:00Z"):
        owner.token = mint(client, owner.key)
        r = client.post("/api/v1/keys", headers=owner.headers, json={"name": "n", "scopes": []})
        assert r.get_json()["expires_at"] == "2030-01-11T00:00:00Z"
        r = client.post("/api/v1/keys", headers=owner.headers,
                        json={"name": "n", "scopes": [], "expires_in_days": 31})
        assert r.status_code == 400
        minted = token_response(client, owner.key)
        assert minted.get_json()["expires_in"] == 120
    r = client.patch("/api/v1/workspace", headers=owner.headers,
                     json={"max_key_lifetime_days": None, "default_key_lifetime_days": None})
    assert r.status_code == 200 and r.get_json()["max_key_lifetime_days"] is None
    assert r.get_json()["token_ttl_seconds"] == 120  # absent fields stay


@pytest.mark.parametrize(("body", "field"), [
    ({"max_key_lifetime_days": 0}, "max_key_lifetime_days"),
    ({"max_key_lifetime_days": 3651}, "max_key_lifetime_days"),
    ({"max_key_lifetime_days": "30"}, "max_key_lifetime_days"),
    ({"default_key_lifetime_days": 2.5}, "default_key_lifetime_days"),
    ({"token_ttl_seconds": 86401}, "token_ttl_seconds"),
    ({"token_ttl_seconds": 0}, "token_ttl_seconds"),
    ({"max_key_lifetime_days": 10, "default_key_lifetime_days": 20},
     "default_key_lifetime_days"),
    ({"slug": "renamed"}, "slug"),
])
def test_bad_policy_is_400(client, factory, app, body, field):
    team = make_team(client, factory)
    r = client.patch("/api/v1/workspace", headers=team["owner"].headers, json=body)
    assert r.status_code == 400 and r.get_json()["field"] == field
    assert audit_events(app, "workspace.policy_changed") == []


def test_empty_patch_changes_nothing(client, factory, app):
    team = make_team(client, factory)
    r = client.patch("/api/v1/workspace", headers=team["owner"].headers, json={})
    assert r.status_code == 200
    assert audit_events(app, "workspace.policy_changed") == []


def test_new_workspaces_cap_key_lifetime_at_365_days(client, factory):
    """Issue #15 §4: a key with keys:write could create a key with the same scopes and no
    expiry, which outlives the revocation of the key that made it. New workspaces now cap a
    key's lifetime at 365 days (GitLab's default); a key asked for without an expiry gets the
    maximum; keys without an expiry exist only once an owner clears the policy."""
    with freeze_time("2030-01-01T00:00:00Z"):
        team = make_team(client, factory)
        owner = team["owner"]
        policy = client.get("/api/v1/workspace", headers=owner.headers).get_json()
        assert policy["max_key_lifetime_days"] == 365
        assert policy["default_key_lifetime_days"] is None
        r = client.post("/api/v1/keys", headers=owner.headers,
                        json={"name": "child", "scopes": ALL_SCOPES.split()})
        assert r.status_code == 201 and r.get_json()["expires_at"] == "2031-01-01T00:00:00Z"
        child = r.get_json()
        path = f"/api/v1/keys/{child['client_id']}"
        r = client.patch(path, headers=owner.headers, json={"expires_at": None})
        assert r.status_code == 400 and r.get_json()["field"] == "expires_at"
        r = client.post("/api/v1/keys", headers=owner.headers,
                        json={"name": "n", "scopes": [], "expires_in_days": 366})
        assert r.status_code == 400 and r.get_json()["field"] == "expires_at"
        # The parent's revocation does not reach the child, but its expiry now does.
        assert client.delete(f"/api/v1/keys/{owner.key.client_id}",
                             headers=owner.headers).status_code == 204
        child_key = (child["client_id"], child["client_secret"])
        assert token_response(client, child_key).status_code == 200
    with freeze_time("2031-01-01T00:00:00Z"):
        assert token_response(client, child_key).status_code == 401


def test_owner_can_allow_keys_without_expiry(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    r = client.patch("/api/v1/workspace", headers=owner.headers,
                     json={"max_key_lifetime_days": None})
    assert r.status_code == 200 and r.get_json()["max_key_lifetime_days"] is None
    r = client.post("/api/v1/keys", headers=owner.headers, json={"name": "n", "scopes": []})
    assert r.status_code == 201 and r.get_json()["expires_at"] is None


def test_cli_workspaces_get_the_default_cap(app, factory):
    from app.extensions import db
    from app.services import accounts

    owner = factory.user()
    result = app.test_cli_runner().invoke(args=["workspaces", "create", "capped", "--owner",
                                                owner])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert accounts.get_workspace(db.session, "capped").max_key_lifetime_days == 365
