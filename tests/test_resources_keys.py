"""Keys restricted to resources over the management API; narrowing; reading resources."""

import json

import pytest

from tests.support import (
    ALL_SCOPES,
    GRANT,
    ORDER_ROUTES,
    ORDERS,
    REPORTS,
    KeyHandle,
    add_resource,
    audit_events,
    introspect,
    make_team,
    post,
)

SCOPES = ALL_SCOPES + " orders:read orders:write reports:read"


@pytest.fixture
def team(app, client, factory):
    add_resource(app, ORDERS, "orders:read orders:write orders:items", ORDER_ROUTES,
                 name="Orders")
    add_resource(app, REPORTS, "reports:read", name="Reports")
    return make_team(client, factory, scopes=SCOPES)


def _create(client, person, **body):
    return client.post("/api/v1/keys", headers=person.headers,
                       json={"name": "svc", "scopes": ["orders:read", "reports:read"], **body})


def _handle(body, team):
    return KeyHandle(body["client_id"], body["client_secret"], team.slug, "")


def test_create_a_key_restricted_to_resources(client, team):
    response = _create(client, team["owner"], resources=[ORDERS, REPORTS])
    assert response.status_code == 201, response.json
    assert response.json["resources"] == [ORDERS, REPORTS]
    assert response.json["introspects_for"] is None
    shown = client.get(f"/api/v1/keys/{response.json['client_id']}",
                       headers=team["owner"].headers).json
    assert shown["resources"] == [ORDERS, REPORTS]
    (event,) = [e for e in audit_events(client.application, "key.created")
                if e.target_id == response.json["client_id"]]
    assert event.details["resources"] == [ORDERS, REPORTS]


def test_unrestricted_keys_show_null(client, team):
    response = _create(client, team["owner"])
    assert response.json["resources"] is None


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"resources": ["https://nope.example.com"]}, "resources", "unknown resource"),
    ({"resources": ["orders.example.com"]}, "resources", "absolute"),
    ({"resources": [ORDERS]}, "scopes", "'reports:read' is not defined by the key's resources"),
    ({"introspects_for": "https://nope.example.com"}, "introspects_for", "unknown resource"),
])
def test_bad_resources_are_400_naming_the_value(client, team, body, field, says):
    response = _create(client, team["owner"], **body)
    assert response.status_code == 400
    assert response.json["field"] == field and says in response.json["error_description"]


def test_keymint_own_api_may_be_named(client, team):
    response = client.post("/api/v1/keys", headers=team["owner"].headers, json={
        "name": "ops", "scopes": ["keys:read"], "resources": ["http://localhost/api/v1"]})
    assert response.status_code == 201, response.json


def test_patch_narrows_resources_and_revokes_tokens_for_dropped_ones(client, team):
    created = _create(client, team["owner"], resources=[ORDERS, REPORTS]).json
    key = _handle(created, team)
    rs = KeyHandle(*_rs(client, team), team.slug, "")
    for_orders = post(client, "/oauth/token", {**GRANT, "resource": ORDERS}, key).json
    for_reports = post(client, "/oauth/token", {**GRANT, "resource": REPORTS}, key).json
    for_both = post(client, "/oauth/token", GRANT, key).json
    response = client.patch(f"/api/v1/keys/{key.client_id}", headers=team["owner"].headers,
                            json={"resources": [ORDERS], "scopes": ["orders:read"]})
    assert response.status_code == 200, response.json
    assert response.json["resources"] == [ORDERS]
    assert introspect(client, rs, for_orders["access_token"])["active"] is True
    assert introspect(client, rs, for_reports["access_token"]) == {"active": False}
    assert introspect(client, rs, for_both["access_token"]) == {"active": False}
    (event,) = [e for e in audit_events(client.application, "key.updated")
                if "resources" in e.details]
    assert event.details["resources"] == {"from": [ORDERS, REPORTS], "to": [ORDERS]}


def _rs(client, team):
    body = client.post("/api/v1/keys", headers=team["owner"].headers,
                       json={"name": "rs", "scopes": ["introspect"]}).json
    return body["client_id"], body["client_secret"]


def test_patch_never_widens_resources(client, team):
    created = _create(client, team["owner"], resources=[ORDERS], scopes=["orders:read"]).json
    response = client.patch(f"/api/v1/keys/{created['client_id']}",
                            headers=team["owner"].headers, json={"resources": [ORDERS, REPORTS]})
    assert response.status_code == 400
    assert response.json["field"] == "resources"
    assert "only be narrowed" in response.json["error_description"]


def test_patch_restricts_an_unrestricted_key(client, team):
    created = _create(client, team["owner"]).json
    key = _handle(created, team)
    rs = KeyHandle(*_rs(client, team), team.slug, "")
    everything = post(client, "/oauth/token", GRANT, key).json["access_token"]
    response = client.patch(f"/api/v1/keys/{key.client_id}", headers=team["owner"].headers,
                            json={"resources": [ORDERS, REPORTS]})
    assert response.status_code == 200, response.json
    # its audience held keymint's own API, which the key no longer may use
    assert introspect(client, rs, everything) == {"active": False}


def test_introspects_for_is_set_once(client, team):
    created = client.post("/api/v1/keys", headers=team["owner"].headers,
                          json={"name": "rs", "scopes": ["introspect"]}).json
    url = f"/api/v1/keys/{created['client_id']}"
    ok = client.patch(url, headers=team["owner"].headers, json={"introspects_for": ORDERS})
    assert ok.status_code == 200 and ok.json["introspects_for"] == ORDERS
    moved = client.patch(url, headers=team["owner"].headers, json={"introspects_for": REPORTS})
    assert moved.status_code == 400 and moved.json["field"] == "introspects_for"


def test_resources_are_readable_by_members(client, team):
    listed = client.get("/api/v1/resources", headers=team["member"].headers)
    assert listed.status_code == 200
    uris = [r["uri"] for r in listed.json["resources"]]
    assert uris == ["http://localhost/api/v1", ORDERS, REPORTS]
    orders = listed.json["resources"][1]
    one = client.get(f"/api/v1/resources/{orders['id']}", headers=team["member"].headers)
    assert one.status_code == 200 and one.json == orders
    assert one.json["routes"]["routes"][1] == {"method": "GET", "path": "/v1/orders/{id}",
                                               "scopes": ["orders:read"]}
    own = client.get("/api/v1/resources/keymint", headers=team["member"].headers).json
    assert own["uri"] == "http://localhost/api/v1" and "keys:read" in own["scopes"]
    missing = client.get("/api/v1/resources/999999", headers=team["member"].headers)
    assert missing.status_code == 404
    assert client.get("/api/v1/resources").status_code == 401


def test_a_token_for_other_resources_gets_nothing_from_keymint_own_api(app, client, factory):
    # A resource cannot define keymint's scopes, so a token minted for it holds none; and its
    # audience does not name keymint's API, so /api/v1 refuses it outright (docs/decisions.md).
    from app.services.errors import InvalidInput

    with pytest.raises(InvalidInput, match="'keys:read' is keymint's own scope"):
        add_resource(app, "https://lookalike.example.com", "keys:read")
    add_resource(app, ORDERS, "orders:read")
    key = factory.key(scopes="keys:read orders:read")
    for_orders = post(client, "/oauth/token", {**GRANT, "resource": ORDERS}, key).json
    assert for_orders["scope"] == "orders:read"
    response = client.get("/api/v1/keys",
                          headers={"Authorization": f"Bearer {for_orders['access_token']}"})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


def test_restricting_a_key_ends_its_tokens_from_before_resources(app, client, team):
    """Tokens minted before resources existed have no audience: they were good everywhere,
    so restricting their key revokes them."""
    from sqlalchemy import update

    from app.extensions import db
    from app.models import AccessToken

    created = _create(client, team["owner"]).json
    key = _handle(created, team)
    rs = KeyHandle(*_rs(client, team), team.slug, "")
    old = post(client, "/oauth/token", GRANT, key).json["access_token"]
    with app.app_context():
        db.session.execute(update(AccessToken).values(audience=None))  # as before 0007
        db.session.commit()
    assert "aud" not in introspect(client, rs, old)
    response = client.patch(f"/api/v1/keys/{key.client_id}", headers=team["owner"].headers,
                            json={"resources": [ORDERS, REPORTS]})
    assert response.status_code == 200, response.json
    assert introspect(client, rs, old) == {"active": False}


# --- the CLI: keys create/update --resource/--introspects-for -----------------------------



@pytest.fixture
def owner_of(app, factory):
    """A workspace and its owner, with Orders and Reports registered."""
    add_resource(app, ORDERS, "orders:read orders:write orders:items", ORDER_ROUTES)
    add_resource(app, REPORTS, "reports:read")
    owner = factory.user()
    return factory.workspace(owner=owner), owner


def _cli_key(cli, owner_of, *args):
    slug, owner = owner_of
    result = cli("keys", "create", "--workspace", slug, "--user", owner, *args, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    return body, KeyHandle(body["client_id"], body["client_secret"], slug, owner)


def test_cli_creates_a_restricted_key_and_a_resource_server_key(app, client, cli, owner_of):
    body, key = _cli_key(cli, owner_of, "--scope", "orders:read reports:read",
                         "--resource", ORDERS, "--resource", REPORTS)
    assert body["resources"] == [ORDERS, REPORTS] and body["introspects_for"] is None
    rs_body, rs = _cli_key(cli, owner_of, "--scope", "introspect", "--introspects-for", ORDERS)
    assert rs_body["introspects_for"] == ORDERS and rs_body["resources"] is None
    token = post(client, "/oauth/token", {**GRANT, "resource": ORDERS}, key).json
    assert token["scope"] == "orders:read"
    assert introspect(client, rs, token["access_token"])["aud"] == [ORDERS]
    (event,) = [e for e in audit_events(app, "key.created") if e.target_id == key.client_id]
    assert event.details["resources"] == [ORDERS, REPORTS]
    (bound,) = [e for e in audit_events(app, "key.created") if e.target_id == rs.client_id]
    assert bound.details["introspects_for"] == ORDERS


def test_cli_create_prints_the_restriction(cli, owner_of):
    slug, owner = owner_of
    result = cli("keys", "create", "--workspace", slug, "--user", owner, "--scope",
                 "orders:read introspect", "--resource", ORDERS, "--introspects-for", ORDERS)
    assert result.exit_code == 0, result.output
    assert f"resources:     {ORDERS}\n" in result.output
    assert f"introspects_for: {ORDERS}\n" in result.output
    plain = cli("keys", "create", "--workspace", slug, "--user", owner, "--scope", "anything")
    assert "resources:" not in plain.output and "introspects_for" not in plain.output


@pytest.mark.parametrize(("args", "says"), [
    (("--scope", "orders:read", "--resource", "https://nope.example.com"),
     "unknown resource 'https://nope.example.com'"),
    (("--scope", "orders:read", "--resource", "orders.example.com"), "absolute"),
    (("--scope", "reports:read", "--resource", ORDERS),
     "scope 'reports:read' is not defined by the key's resources"),
    (("--scope", "introspect", "--introspects-for", "https://nope.example.com"),
     "unknown resource 'https://nope.example.com'"),
])
def test_cli_create_refuses_bad_resources_like_the_api(app, cli, owner_of, args, says):
    slug, owner = owner_of
    result = cli("keys", "create", "--workspace", slug, "--user", owner, *args)
    assert result.exit_code == 1
    assert says in result.output
    assert audit_events(app, "key.created") == []


def test_cli_update_narrows_resources_and_revokes_tokens_for_dropped_ones(app, client, cli,
                                                                         owner_of):
    _, key = _cli_key(cli, owner_of, "--scope", "orders:read reports:read",
                      "--resource", ORDERS, "--resource", REPORTS)
    _, rs = _cli_key(cli, owner_of, "--scope", "introspect")
    for_orders = post(client, "/oauth/token", {**GRANT, "resource": ORDERS}, key).json
    for_reports = post(client, "/oauth/token", {**GRANT, "resource": REPORTS}, key).json
    both = post(client, "/oauth/token", GRANT, key).json["access_token"]
    # the key's scopes must fit its resources: a scope only REPORTS defines must go too
    refused = cli("keys", "update", key.client_id, "--resource", ORDERS)
    assert refused.exit_code == 1
    assert "scope 'reports:read' is not defined by the key's resources" in refused.output
    assert introspect(client, rs, for_reports["access_token"])["active"] is True
    result = cli("keys", "update", key.client_id, "--resource", ORDERS,
                 "--scope", "orders:read", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["resources"] == [ORDERS] and body["scopes"] == ["orders:read"]
    assert introspect(client, rs, for_reports["access_token"]) == {"active": False}
    assert introspect(client, rs, both) == {"active": False}
    assert introspect(client, rs, for_orders["access_token"])["active"] is True
    (event,) = [e for e in audit_events(app, "key.updated") if e.target_id == key.client_id]
    assert event.details["resources"] == {"from": [ORDERS, REPORTS], "to": [ORDERS]}
    assert event.details["scopes"] == {"from": ["orders:read", "reports:read"],
                                       "to": ["orders:read"]}


def test_cli_update_never_widens_and_binds_once(app, cli, owner_of):
    _, key = _cli_key(cli, owner_of, "--scope", "orders:read", "--resource", ORDERS)
    widened = cli("keys", "update", key.client_id, "--resource", ORDERS, "--resource", REPORTS)
    assert widened.exit_code == 1
    assert f"resources can only be narrowed; not held: {REPORTS}" in widened.output
    _, rs = _cli_key(cli, owner_of, "--scope", "introspect")
    bound = cli("keys", "update", rs.client_id, "--introspects-for", ORDERS)
    assert bound.exit_code == 0, bound.output
    assert f"introspects_for: {ORDERS}" in bound.output
    again = cli("keys", "update", rs.client_id, "--introspects-for", ORDERS)
    assert again.exit_code == 0  # the same binding: nothing changes
    moved = cli("keys", "update", rs.client_id, "--introspects-for", REPORTS)
    assert moved.exit_code == 1
    assert "--introspects-for is already set; it cannot be moved or cleared" in moved.output
    updates = [e for e in audit_events(app, "key.updated") if e.target_id == rs.client_id]
    assert [e.details for e in updates] == [{"introspects_for": {"from": None, "to": ORDERS}}]


def test_cli_update_without_resource_options_leaves_them_alone(cli, owner_of):
    _, key = _cli_key(cli, owner_of, "--scope", "orders:read", "--resource", ORDERS)
    result = cli("keys", "update", key.client_id, "--name", "renamed", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["name"] == "renamed" and body["resources"] == [ORDERS]


# --- token listings show the audience -----------------------------------------------------


def test_token_listing_shows_each_tokens_audience(app, client, team):
    created = _create(client, team["owner"], resources=[ORDERS, REPORTS]).json
    key = _handle(created, team)
    post(client, "/oauth/token", {**GRANT, "resource": REPORTS}, key)
    post(client, "/oauth/token", GRANT, key)
    listed = client.get(f"/api/v1/keys/{key.client_id}/tokens",
                        headers=team["owner"].headers)
    assert listed.status_code == 200
    audiences = sorted(t["audience"] for t in listed.json["tokens"])
    assert audiences == [[ORDERS, REPORTS], [REPORTS]]


def test_token_listing_shows_an_empty_audience_for_tokens_from_before_resources(app, client,
                                                                                team):
    from sqlalchemy import select, update

    from app.extensions import db
    from app.models import AccessToken, ApiKey

    created = _create(client, team["owner"]).json
    key = _handle(created, team)
    post(client, "/oauth/token", GRANT, key)
    key_id = select(ApiKey.id).where(ApiKey.client_id == key.client_id).scalar_subquery()
    with app.app_context():  # as before migration 0007
        db.session.execute(update(AccessToken).where(AccessToken.key_id == key_id)
                           .values(audience=None))
        db.session.commit()
    listed = client.get(f"/api/v1/keys/{key.client_id}/tokens", headers=team["owner"].headers)
    assert [t["audience"] for t in listed.json["tokens"]] == [[]]
