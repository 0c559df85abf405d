"""/api/v1/keys: authorization model, role matrix, escalation, CRUD, rotation, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from tests.support import (
    ALL_SCOPES,
    audit_events,
    bearer,
    introspect,
    make_team,
    mint,
    token_response,
)

# --- authentication and scopes ------------------------------------------------------------


def test_missing_token_is_401_with_bearer_challenge(client):
    r = client.get("/api/v1/keys")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="keymint"'
    assert r.get_json()["error"]


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer at_" + "A" * 46,
                                    "Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_invalid_credentials_are_401_bearer(client, header):
    r = client.get("/api/v1/keys", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_expired_token_is_401(client, factory):
    team = make_team(client, factory)
    with freeze_time(datetime.now(UTC) + timedelta(hours=1)):
        r = client.get("/api/v1/keys", headers=team["owner"].headers)
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("method", "path", "needs"), [
    ("get", "/api/v1/keys", "keys:read"),
    ("post", "/api/v1/keys", "keys:write"),
    ("get", "/api/v1/keys/{cid}", "keys:read"),
    ("patch", "/api/v1/keys/{cid}", "keys:write"),
    ("delete", "/api/v1/keys/{cid}", "keys:write"),
    ("post", "/api/v1/keys/{cid}/rotate", "keys:write"),
    ("get", "/api/v1/keys/{cid}/tokens", "keys:read"),
    ("delete", "/api/v1/keys/{cid}/tokens", "keys:write"),
])
def test_token_without_the_scope_is_403_insufficient_scope(client, factory, method, path,
                                                            needs):
    team = make_team(client, factory)
    owner = team["owner"]
    others = " ".join(s for s in ALL_SCOPES.split() if s != needs)
    token = mint(client, owner.key, scope=others)
    body = {"post": {"name": "x", "scopes": []}, "patch": {}}.get(method)
    if path.endswith("rotate"):
        body = None
    url = path.format(cid=owner.key.client_id)
    r = getattr(client, method)(url, headers=bearer(token), json=body)
    assert r.status_code == 403
    assert r.get_json()["error"] == "insufficient_scope"
    assert needs in r.headers["WWW-Authenticate"]
    # The same key, with a token holding the scope, gets through.
    assert getattr(client, method)(url, headers=owner.headers, json=body).status_code < 400


def test_scope_narrowed_on_the_key_revokes_broader_tokens(client, factory):
    team = make_team(client, factory)
    admin, owner = team["admin"], team["owner"]
    r = client.patch(f"/api/v1/keys/{admin.key.client_id}", headers=owner.headers,
                     json={"scopes": ["keys:read"]})
    assert r.status_code == 200
    assert client.get("/api/v1/keys", headers=admin.headers).status_code == 401


# --- role matrix --------------------------------------------------------------------------

ROUTES = [
    ("get", "/api/v1/keys/{cid}", None, 200),
    ("patch", "/api/v1/keys/{cid}", {"name": "renamed"}, 200),
    ("post", "/api/v1/keys/{cid}/rotate", {"grace_period": 0}, 200),
    ("get", "/api/v1/keys/{cid}/tokens", None, 200),
    ("delete", "/api/v1/keys/{cid}/tokens", None, 200),
    ("delete", "/api/v1/keys/{cid}", None, 204),
]


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
@pytest.mark.parametrize("target", ["own", "other_member", "other_workspace"])
def test_role_matrix(client, factory, app, role, target):
    team = make_team(client, factory)
    other_team = make_team(client, factory)
    caller = team[role]
    if target == "own":
        slug, email = team.slug, caller.email
    elif target == "other_member":
        slug, email = team.slug, factory.member(team.slug)
    else:
        slug, email = other_team.slug, other_team["member"].email
    allowed = target == "own" or (target == "other_member" and role != "member")
    for method, path, body, ok in ROUTES:
        key = factory.key(slug, email, scopes="introspect")  # a fresh target per route
        r = getattr(client, method)(path.format(cid=key.client_id), headers=caller.headers,
                                    json=body)
        expected = ok if allowed else 404
        if allowed and path.endswith("/rotate") and target != "own":
            expected = 403  # a rotation hands out a secret: only the key's own user rotates
        assert r.status_code == expected, (method, path, r.get_json())
        if not allowed:
            assert r.get_json()["error"] == "not_found"
            # Nothing happened to the key: it still mints tokens with its secret.
            assert token_response(client, key).status_code == 200


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_list_shows_members_only_their_own_keys(client, factory, role):
    team = make_team(client, factory)
    other = make_team(client, factory)
    r = client.get("/api/v1/keys", headers=team[role].headers)
    assert r.status_code == 200
    listed = {k["client_id"] for k in r.get_json()["keys"]}
    all_keys = {p.key.client_id for p in team.people.values()}
    if role == "member":
        assert listed == {team["member"].key.client_id}
    else:
        assert listed == all_keys
    assert not listed & {p.key.client_id for p in other.people.values()}


def test_member_filtering_by_another_user_sees_nothing(client, factory):
    team = make_team(client, factory)
    r = client.get("/api/v1/keys", headers=team["member"].headers,
                   query_string={"user": team["owner"].user_id})
    assert r.status_code == 200 and r.get_json()["keys"] == []


def test_demoted_admin_loses_rights_on_the_next_request(client, factory):
    team = make_team(client, factory)
    admin, owner, member = team["admin"], team["owner"], team["member"]
    path = f"/api/v1/keys/{member.key.client_id}"
    assert client.get(path, headers=admin.headers).status_code == 200
    r = client.patch(f"/api/v1/members/{admin.user_id}", headers=owner.headers,
                     json={"role": "member"})
    assert r.status_code == 200
    # Same token, minted while an admin: the role is read now, not at mint time.
    assert client.get(path, headers=admin.headers).status_code == 404
    keys = client.get("/api/v1/keys", headers=admin.headers).get_json()["keys"]
    assert [k["client_id"] for k in keys] == [admin.key.client_id]


# --- create -------------------------------------------------------------------------------


def test_create_returns_secret_once_with_location(client, factory, app):
    team = make_team(client, factory)
    owner = team["owner"]
    r = client.post("/api/v1/keys", headers=owner.headers,
                    json={"name": "ci deploy", "scopes": ["introspect"], "expires_in_days": 30})
    assert r.status_code == 201
    body = r.get_json()
    cid, secret = body["client_id"], body["client_secret"]
    assert r.headers["Location"] == f"/api/v1/keys/{cid}"
    assert body["owner"]["email"] == owner.email
    assert body["scopes"] == ["introspect"]
    assert body["secret_hint"] == secret[:8] and body["state"] == "active"
    assert body["expires_at"].endswith("Z")
    assert token_response(client, (cid, secret)).status_code == 200
    again = client.get(r.headers["Location"], headers=owner.headers).get_json()
    assert "client_secret" not in again and secret not in str(again)
    [event] = [e for e in audit_events(app, "key.created") if e.target_id == cid]
    assert (event.actor_type, event.actor_id, event.actor_key) == (
        "user", owner.user_id, owner.key.client_id)


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_no_scope_escalation_beyond_the_calling_key(client, factory, role):
    team = make_team(client, factory, scopes="keys:read keys:write introspect")
    r = client.post("/api/v1/keys", headers=team[role].headers,
                    json={"name": "x", "scopes": ["introspect", "payments:write"]})
    assert r.status_code == 403
    assert r.get_json()["field"] == "scopes" and "payments:write" in r.get_json()[
        "error_description"]


@pytest.mark.parametrize(("role", "status"), [("member", 403), ("admin", 201), ("owner", 201)])
def test_management_scopes_only_by_admins_and_owners(client, factory, role, status):
    team = make_team(client, factory)  # every key, the member's too, holds every scope
    r = client.post("/api/v1/keys", headers=team[role].headers,
                    json={"name": "x", "scopes": ["keys:read"]})
    assert r.status_code == status, r.get_json()
    r = client.post("/api/v1/keys", headers=team[role].headers,
                    json={"name": "x", "scopes": ["introspect"]})
    assert r.status_code == 201


def test_created_key_belongs_to_the_caller(client, factory):
    team = make_team(client, factory)
    r = client.post("/api/v1/keys", headers=team["member"].headers,
                    json={"name": "mine", "scopes": []})
    assert r.get_json()["owner"]["id"] == team["member"].user_id


def test_workspace_policy_bounds_and_defaults_expiry(client, factory):
    with freeze_time("2030-01-01T00:00:00Z"):
        team = make_team(client, factory, max_key_lifetime_days=30,
                         default_key_lifetime_days=7)
        headers = team["owner"].headers
        r = client.post("/api/v1/keys", headers=headers, json={"name": "d", "scopes": []})
        assert r.status_code == 201
        assert r.get_json()["expires_at"] == "2030-01-08T00:00:00Z"
        r = client.post("/api/v1/keys", headers=headers,
                        json={"name": "d", "scopes": [], "expires_in_days": 31})
        assert r.status_code == 400 and r.get_json()["field"] == "expires_at"
        r = client.post("/api/v1/keys", headers=headers,
                        json={"name": "d", "scopes": [], "expires_at": "2030-01-31T00:00:00Z"})
        assert r.status_code == 201
        r = client.post("/api/v1/keys", headers=headers,
                        json={"name": "d", "scopes": [], "expires_at": "2030-01-31T00:00:01Z"})
        assert r.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "scopes": [], "expires_at": "2030-01-01T00:00:00Z", "expires_in_days": 3},
     "expires_at"),
    ({"name": "x", "scopes": [], "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "x", "scopes": [], "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ({"name": "x", "scopes": [], "expires_at": "not a time"}, "expires_at"),
    ({"name": "x", "scopes": [], "expires_in_days": 0}, "expires_in_days"),
    ({"name": "x", "scopes": [], "expires_in_days": 1.5}, "expires_in_days"),
    ({"name": "x", "scopes": [], "expires_in_days": True}, "expires_in_days"),
    ({"name": "x", "scopes": [], "expires_in_days": "3"}, "expires_in_days"),
    ({"name": "x", "scopes": "introspect"}, "scopes"),
    ({"name": "x", "scopes": ["has space"]}, "scopes"),
    ({"name": "x", "scopes": [1]}, "scopes"),
    ({"name": "", "scopes": []}, "name"),
    ({"name": "   ", "scopes": []}, "name"),
    ({"name": "a\nb", "scopes": []}, "name"),
    ({"name": "x" * 201, "scopes": []}, "name"),
    ({"name": 5, "scopes": []}, "name"),
    ({"scopes": []}, "name"),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": [], "owner": "someone"}, "owner"),
    ({"name": "x", "scopes": [], "client_secret": "sk_mine"}, "client_secret"),
])
def test_create_validation_names_the_field(client, factory, body, field):
    team = make_team(client, factory)
    r = client.post("/api/v1/keys", headers=team["owner"].headers, json=body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == "invalid_request"
    assert r.get_json()["field"] == field
    assert "sk_mine" not in r.get_data(as_text=True)


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"name"', b"null", b"42", b"",
                                 b'{"name": "a", "name": "b", "scopes": []}',
                                 b'{"name": "x", "scopes": [], "expires_in_days": NaN}',
                                 b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
def test_malformed_bodies_are_400_never_500(client, factory, raw):
    team = make_team(client, factory)
    r = client.post("/api/v1/keys", headers=team["owner"].headers, data=raw,
                    content_type="application/json")
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid_request"


def test_integral_numbers_are_integers_as_json_schema_says(client, factory):
    team = make_team(client, factory)
    r = client.post("/api/v1/keys", headers=team["owner"].headers,
                    data=b'{"name": "x", "scopes": [], "expires_in_days": 2.0}',
                    content_type="application/json")
    assert r.status_code == 201


def test_non_json_body_is_415(client, factory):
    team = make_team(client, factory)
    r = client.post("/api/v1/keys", headers=team["owner"].headers,
                    data={"name": "x", "scopes": "introspect"})
    assert r.status_code == 415
    assert r.get_json()["error"] == "unsupported_media_type"


# --- list: filters and pagination ---------------------------------------------------------


def test_filters_by_state_user_and_expiring(client, factory):
    with freeze_time("2030-01-01T00:00:00Z"):
        team = make_team(client, factory)
        owner, member = team["owner"], team["member"]
        soon = factory.key(team.slug, member.email, expires_in_days=3)
        later = factory.key(team.slug, member.email, expires_in_days=40)
        gone = factory.key(team.slug, member.email)
        assert client.delete(f"/api/v1/keys/{gone.client_id}",
                             headers=owner.headers).status_code == 204
    with freeze_time("2030-01-02T00:00:00Z"):
        def ids(**query):
            r = client.get("/api/v1/keys", headers=owner.headers, query_string=query)
            assert r.status_code == 200, r.get_json()
            return {k["client_id"] for k in r.get_json()["keys"]}

        owner.token = mint(client, owner.key)
        assert ids(state="revoked") == {gone.client_id}
        assert ids(expiring_within_days=7) == {soon.client_id}
        assert ids(expiring_within_days=60) == {soon.client_id, later.client_id}
        mine = ids(user=member.user_id)
        assert mine == ids(user=member.email.upper()) == {
            soon.client_id, later.client_id, gone.client_id, member.key.client_id}
        assert ids(user="nobody@example.com") == set()
    with freeze_time("2030-01-05T00:00:00Z"):
        owner.token = mint(client, owner.key)
        assert soon.client_id in ids(state="expired")
        assert soon.client_id not in ids(state="active")


def test_pagination_is_newest_first_and_stable(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    for i in range(5):
        factory.key(team.slug, owner.email, name=f"k{i}")
    first = client.get("/api/v1/keys?limit=3", headers=owner.headers).get_json()
    assert len(first["keys"]) == 3 and first["next_cursor"]
    factory.key(team.slug, owner.email, name="inserted meanwhile")
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = client.get("/api/v1/keys", headers=owner.headers,
                          query_string={"limit": 3, "cursor": cursor}).get_json()
        rest += page["keys"]
        cursor = page["next_cursor"]
    names = [k["name"] for k in first["keys"] + rest]
    assert "inserted meanwhile" not in names  # it is newer than the first page
    assert len(names) == len(set(k["client_id"] for k in first["keys"] + rest)) == 8
    created = [k["created_at"] for k in first["keys"] + rest]
    assert created == sorted(created, reverse=True)
    assert names[:5] == ["k4", "k3", "k2", "k1", "k0"]


@pytest.mark.parametrize("query", [{"cursor": "garbage!"}, {"cursor": "a2V5czp4"},
                                   {"cursor": "a2V5czo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
                                   {"limit": 0}, {"limit": 101}, {"limit": "x"},
                                   {"state": "dead"}, {"expiring_within_days": -1},
                                   {"colour": "red"}])
def test_bad_list_query_is_400_naming_it(client, factory, query):
    team = make_team(client, factory)
    r = client.get("/api/v1/keys", headers=team["owner"].headers, query_string=query)
    assert r.status_code == 400
    assert r.get_json()["field"] == next(iter(query))


def test_repeated_query_parameter_is_400(client, factory):
    team = make_team(client, factory)
    r = client.get("/api/v1/keys?state=active&state=revoked", headers=team["owner"].headers)
    assert r.status_code == 400 and r.get_json()["field"] == "state"


# --- read, patch, delete ------------------------------------------------------------------


def test_key_json_shape_has_no_digest(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    mint(client, owner.key)
    body = client.get(f"/api/v1/keys/{owner.key.client_id}", headers=owner.headers).get_json()
    assert set(body) == {"client_id", "name", "workspace", "owner", "scopes", "state",
                         "created_at", "expires_at", "revoked_at", "last_used_at",
                         "last_used_ip", "secret_hint", "rate_limit", "resources",
                         "introspects_for"}
    assert body["last_used_at"].endswith("Z") and body["last_used_ip"]
    assert body["secret_hint"] == owner.key.secret[:8]


def test_patch_renames_narrows_and_refuses_widening(client, factory, app):
    team = make_team(client, factory)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email, scopes="introspect keys:read")
    wide = mint(client, key)
    narrow = mint(client, key, scope="introspect")
    path = f"/api/v1/keys/{key.client_id}"
    r = client.patch(path, headers=owner.headers, json={"scopes": ["introspect", "keys:write"]})
    assert r.status_code == 400 and r.get_json()["field"] == "scopes"
    r = client.patch(path, headers=owner.headers, json={"name": "renamed",
                                                        "scopes": ["introspect"]})
    assert r.status_code == 200
    assert r.get_json()["name"] == "renamed" and r.get_json()["scopes"] == ["introspect"]
    assert introspect(client, owner.key, wide) == {"active": False}
    assert introspect(client, owner.key, narrow)["active"] is True
    [event] = [e for e in audit_events(app, "key.updated") if e.target_id == key.client_id]
    assert event.details["name"]["to"] == "renamed" and event.actor_key == owner.key.client_id


def test_patch_expiry_within_policy(client, factory):
    with freeze_time("2030-01-01T00:00:00Z"):
        team = make_team(client, factory, max_key_lifetime_days=30)
        owner = team["owner"]
        key = factory.key(team.slug, owner.email, expires_in_days=10)
        path = f"/api/v1/keys/{key.client_id}"
        r = client.patch(path, headers=owner.headers, json={"expires_in_days": 30})
        assert r.status_code == 200 and r.get_json()["expires_at"] == "2030-01-31T00:00:00Z"
        r = client.patch(path, headers=owner.headers, json={"expires_at": None})
        assert r.status_code == 400 and r.get_json()["field"] == "expires_at"
        r = client.patch(path, headers=owner.headers,
                         json={"expires_at": "2030-02-01T00:00:00Z"})
        assert r.status_code == 400
        r = client.patch(path, headers=owner.headers,
                         json={"expires_at": "2030-01-02T00:00:00+01:00"})
        assert r.status_code == 200 and r.get_json()["expires_at"] == "2030-01-01T23:00:00Z"
    with freeze_time("2030-01-03T00:00:00Z"):
        owner.token = mint(client, owner.key)
        r = client.patch(path, headers=owner.headers, json={"expires_in_days": 5})
        assert r.status_code == 409
        assert client.patch(path, headers=owner.headers, json={"name": "old"}).status_code == 200


def test_patch_without_workspace_max_can_remove_expiry(client, factory):
    team = make_team(client, factory, max_key_lifetime_days=None)  # owner cleared the cap
    key = factory.key(team.slug, team["owner"].email, expires_in_days=3)
    r = client.patch(f"/api/v1/keys/{key.client_id}", headers=team["owner"].headers,
                     json={"expires_at": None})
    assert r.status_code == 200 and r.get_json()["expires_at"] is None


@pytest.mark.parametrize("body", [{"scopes": None}, {"name": None}, {"grace_period": 1},
                                  {"expires_in_days": 2, "expires_at": "2031-01-01T00:00:00Z"}])
def test_patch_rejects_bad_fields(client, factory, body):
    team = make_team(client, factory)
    r = client.patch(f"/api/v1/keys/{team['owner'].key.client_id}",
                     headers=team["owner"].headers, json=body)
    assert r.status_code == 400 and r.get_json()["field"] in body


def test_delete_revokes_key_secrets_and_tokens_at_once(client, factory, app):
    team = make_team(client, factory)
    owner, member = team["owner"], team["member"]
    key = factory.key(team.slug, member.email, scopes="introspect keys:read")
    tokens = [mint(client, key) for _ in range(3)]
    assert all(introspect(client, owner.key, t)["active"] for t in tokens)
    path = f"/api/v1/keys/{key.client_id}"
    r = client.delete(path, headers=member.headers)
    assert r.status_code == 204 and r.data == b""
    assert all(introspect(client, owner.key, t) == {"active": False} for t in tokens)
    assert client.get("/api/v1/keys", headers=bearer(tokens[0])).status_code == 401
    assert token_response(client, key).status_code == 401
    body = client.get(path, headers=member.headers).get_json()
    assert body["state"] == "revoked" and body["revoked_at"].endswith("Z")
    assert client.delete(path, headers=member.headers).status_code == 204  # idempotent
    assert client.patch(path, headers=member.headers, json={"name": "x"}).status_code == 409
    assert client.post(f"{path}/rotate", headers=member.headers).status_code == 409
    [event] = [e for e in audit_events(app, "key.revoked") if e.target_id == key.client_id]
    assert event.details["tokens_revoked"] == 3
    assert (event.actor_id, event.actor_key) == (member.user_id, member.key.client_id)


def test_unknown_and_malformed_client_ids_are_404(client, factory):
    team = make_team(client, factory)
    for cid in ["key_" + "A" * 24, "nope", "key_%00", "' OR 1=1 --"]:
        r = client.get(f"/api/v1/keys/{cid}", headers=team["owner"].headers)
        assert r.status_code == 404


# --- rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["owner", "member"])
def test_admin_cannot_take_over_another_users_key_by_rotating_it(client, factory, victim):
    """Rotating hands out a secret: an admin must not obtain an owner's (or anyone's) key."""
    team = make_team(client, factory)
    target = factory.key(team.slug, team[victim].email, scopes="keys:read keys:write")
    r = client.post(f"/api/v1/keys/{target.client_id}/rotate", headers=team["admin"].headers,
                    json={"grace_period": 0})
    assert r.status_code == 403
    assert "client_secret" not in r.get_json()
    assert token_response(client, target).status_code == 200


def test_narrowed_token_cannot_create_a_key_with_its_keys_other_scopes(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    narrow = mint(client, owner.key, scope="keys:write")
    r = client.post("/api/v1/keys", headers=bearer(narrow),
                    json={"name": "wider", "scopes": ["keys:read"]})
    assert r.status_code == 403 and r.get_json()["field"] == "scopes"
    ok = client.post("/api/v1/keys", headers=bearer(narrow),
                     json={"name": "same", "scopes": ["keys:write"]})
    assert ok.status_code == 201


def test_rotation_grace_period_boundaries(client, factory, app):
    team = make_team(client, factory, max_key_lifetime_days=None)  # keys that live until 2030
    owner = team["owner"]
    with freeze_time("2030-01-01T00:00:00Z"):
        owner.token = mint(client, owner.key)
        key = factory.key(team.slug, owner.email)
        old_token = mint(client, key)
        r = client.post(f"/api/v1/keys/{key.client_id}/rotate", headers=owner.headers,
                        json={"grace_period": 3600})
        assert r.status_code == 200
        body = r.get_json()
        new_secret = body["client_secret"]
        assert body["previous_secret_expires_at"] == "2030-01-01T01:00:00Z"
        assert body["secret_hint"] == new_secret[:8]
        assert token_response(client, (key.client_id, new_secret)).status_code == 200
        assert introspect(client, key, old_token)["active"] is True
    with freeze_time("2030-01-01T00:59:59Z"):
        late = token_response(client, key)
        assert late.status_code == 200
        # A token never outlives the secret that minted it.
        assert late.get_json()["expires_in"] == 1
        assert introspect(client, owner.key, late.get_json()["access_token"])["active"]
    with freeze_time("2030-01-01T01:00:00Z"):
        assert token_response(client, key).status_code == 401
        assert token_response(client, (key.client_id, new_secret)).status_code == 200
        assert introspect(client, owner.key, late.get_json()["access_token"]) == {
            "active": False}
    [event] = [e for e in audit_events(app, "key.secret_rotated")
               if e.target_id == key.client_id]
    assert event.details["grace_period"] == 3600 and event.actor_key == owner.key.client_id


def test_rotation_default_grace_is_a_day_and_zero_ends_it_now(client, factory):
    team = make_team(client, factory, max_key_lifetime_days=None)  # keys that live until 2030
    owner = team["owner"]
    key = factory.key(team.slug, owner.email)
    path = f"/api/v1/keys/{key.client_id}/rotate"
    with freeze_time("2030-01-01T00:00:00Z"):
        owner.token = mint(client, owner.key)
        r = client.post(path, headers=owner.headers)  # no body at all
        assert r.status_code == 200
        assert r.get_json()["previous_secret_expires_at"] == "2030-01-02T00:00:00Z"
        second = r.get_json()["client_secret"]
        r = client.post(path, headers=owner.headers, json={"grace_period": 0})
        assert r.get_json()["previous_secret_expires_at"] is None
        third = r.get_json()["client_secret"]
        assert token_response(client, (key.client_id, second)).status_code == 401
        # The rotation during a grace period ended the oldest secret too.
        assert token_response(client, key).status_code == 401
        assert token_response(client, (key.client_id, third)).status_code == 200


def test_rotation_during_grace_ends_the_older_secret_now(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email)
    path = f"/api/v1/keys/{key.client_id}/rotate"
    second = client.post(path, headers=owner.headers).get_json()["client_secret"]
    third = client.post(path, headers=owner.headers).get_json()["client_secret"]
    assert token_response(client, key).status_code == 401
    assert token_response(client, (key.client_id, second)).status_code == 200
    assert token_response(client, (key.client_id, third)).status_code == 200


def test_grace_period_never_outlives_the_key(client, factory):
    team = make_team(client, factory, max_key_lifetime_days=None)  # keys that live until 2030
    owner = team["owner"]
    with freeze_time("2030-01-01T00:00:00Z"):
        owner.token = mint(client, owner.key)
        key = factory.key(team.slug, owner.email,
                          expires_at=datetime(2030, 1, 1, 2, tzinfo=UTC))
        r = client.post(f"/api/v1/keys/{key.client_id}/rotate", headers=owner.headers,
                        json={"grace_period": 604800})
        assert r.get_json()["previous_secret_expires_at"] == "2030-01-01T02:00:00Z"


@pytest.mark.parametrize("grace", [-1, 604801, 1.5, "60", None, True])
def test_rotation_rejects_bad_grace_period(client, factory, grace):
    team = make_team(client, factory)
    owner = team["owner"]
    r = client.post(f"/api/v1/keys/{owner.key.client_id}/rotate", headers=owner.headers,
                    json={"grace_period": grace})
    assert r.status_code == 400 and r.get_json()["field"] == "grace_period"
    assert token_response(client, owner.key).status_code == 200


def test_rotating_an_expired_key_is_409(client, factory):
    team = make_team(client, factory, max_key_lifetime_days=None)  # keys that live until 2030
    owner = team["owner"]
    with freeze_time("2030-01-01T00:00:00Z"):
        key = factory.key(team.slug, owner.email, expires_in_days=1)
    with freeze_time("2030-01-03T00:00:00Z"):
        owner.token = mint(client, owner.key)
        r = client.post(f"/api/v1/keys/{key.client_id}/rotate", headers=owner.headers)
        assert r.status_code == 409


# --- tokens -------------------------------------------------------------------------------


def test_list_and_revoke_tokens_of_a_key(client, factory, app):
    team = make_team(client, factory)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email, scopes="introspect keys:read")
    tokens = [mint(client, key), mint(client, key, scope="introspect")]
    path = f"/api/v1/keys/{key.client_id}/tokens"
    r = client.get(path, headers=owner.headers)
    assert r.status_code == 200
    listed = r.get_json()["tokens"]
    jtis = {introspect(client, key, t)["jti"] for t in tokens}
    assert {t["jti"] for t in listed} == jtis
    assert not any(t in r.get_data(as_text=True) for t in tokens)
    assert {tuple(t["scopes"]) for t in listed} == {("introspect", "keys:read"),
                                                    ("introspect",)}
    r = client.delete(path, headers=owner.headers)
    assert r.status_code == 200 and r.get_json() == {"revoked": 2}
    assert all(introspect(client, owner.key, t) == {"active": False} for t in tokens)
    assert client.get(path, headers=owner.headers).get_json() == {"tokens": []}
    assert token_response(client, key).status_code == 200  # the key stays
    [event] = [e for e in audit_events(app, "key.tokens_revoked")
               if e.target_id == key.client_id]
    assert event.details == {"count": 2} and event.actor_id == owner.user_id


# --- concurrency (row locks on PostgreSQL, the write lock on SQLite) -----------------------


def test_concurrent_rotations_leave_one_current_and_at_most_one_previous(
        app, client, factory):
    import threading

    from sqlalchemy import select

    from app.extensions import db
    from app.models import ApiKey, KeySecret

    team = make_team(client, factory)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email)
    path = f"/api/v1/keys/{key.client_id}/rotate"
    results: list[tuple[int, str | None]] = []
    barrier = threading.Barrier(6)

    def rotate() -> None:
        local = app.test_client()  # each request gets its own app context and session
        barrier.wait()
        r = local.post(path, headers=owner.headers, json={"grace_period": 600})
        results.append((r.status_code, (r.get_json() or {}).get("client_secret")))

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [status for status, _ in results] == [200] * 6
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.client_id == key.client_id))
        secrets = db.session.scalars(select(KeySecret).where(KeySecret.key_id == key_id)).all()
        current = [s for s in secrets if s.revoked_at is None and s.expires_at is None]
        previous = [s for s in secrets if s.revoked_at is None and s.expires_at is not None]
        assert len(current) == 1 and len(previous) <= 1 and len(secrets) == 7
    working = [secret for _, secret in results if token_response(client, (key.client_id, secret))
               .status_code == 200]
    assert len(working) == 2  # the current one and the one in its grace period
    events = [e for e in audit_events(app, "key.secret_rotated")
              if e.target_id == key.client_id]
    assert len(events) == 6
