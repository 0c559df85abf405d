"""Introspection with resources: aud, resource-bound callers, route decisions (method/path)."""

import pytest

from tests.support import (
    GRANT,
    ORDER_ROUTES,
    ORDERS,
    REPORTS,
    add_resource,
    introspect,
    post,
)
from tests.test_statement_budget import _check, counted

ORDER_SCOPES = "orders:read orders:write orders:items"


@pytest.fixture
def world(app, factory):
    """Orders (with routes) and Reports; one workspace; a client key; two resource servers."""
    add_resource(app, ORDERS, ORDER_SCOPES, ORDER_ROUTES)
    add_resource(app, REPORTS, "reports:read")
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    client_key = factory.key(slug, owner, scopes="orders:read orders:write reports:read")
    orders_rs = factory.key(slug, owner, scopes="introspect", introspects_for=ORDERS)
    reports_rs = factory.key(slug, owner, scopes="introspect", introspects_for=REPORTS)
    return client_key, orders_rs, reports_rs


def _mint(client, key, **data):
    response = post(client, "/oauth/token", {**GRANT, **data}, key)
    assert response.status_code == 200, response.text
    return response.json["access_token"]


def _ask(client, caller, token, **extra):
    return post(client, "/oauth/introspect", {"token": token, **extra}, caller)


def test_a_bound_resource_server_sees_only_tokens_for_it(client, world):
    client_key, orders_rs, reports_rs = world
    for_reports = _mint(client, client_key, resource=REPORTS)
    assert introspect(client, orders_rs, for_reports) == {"active": False}
    body = introspect(client, reports_rs, for_reports)
    assert body["active"] is True and body["aud"] == [REPORTS]
    for_orders = _mint(client, client_key, resource=ORDERS)
    assert introspect(client, reports_rs, for_orders) == {"active": False}
    assert introspect(client, orders_rs, for_orders)["aud"] == [ORDERS]


def test_a_token_for_everything_is_good_for_each_resource(client, world):
    client_key, orders_rs, reports_rs = world
    token = _mint(client, client_key)  # no resource: every resource the key may use
    assert introspect(client, orders_rs, token)["active"] is True
    assert introspect(client, reports_rs, token)["active"] is True


@pytest.mark.parametrize(("method", "path", "allowed", "missing"), [
    ("GET", "/v1/orders/42", True, None),
    ("get", "/v1/orders/42?expand=items", True, None),
    ("GET", "/v1/orders", True, None),
    ("GET", "/v1/orders/42/items", False, "orders:items"),  # the longer template decides
    ("GET", "/v1/orders/42/", False, None),  # an empty segment is no {id}: unlisted, denied
    ("GET", "/v1/orders//items", False, None),
    ("GET", "/v1/orders/42/items/7", False, None),  # unlisted: default deny
    ("POST", "/v1/orders", True, None),
    ("DELETE", "/v1/orders/42", False, None),
])
def test_route_decisions_at_template_boundaries(client, world, method, path, allowed, missing):
    client_key, orders_rs, _ = world
    token = _mint(client, client_key, resource=ORDERS)
    response = _ask(client, orders_rs, token, method=method, path=path)
    assert response.status_code == 200, response.text
    body = response.json
    assert body["active"] is True and body["allowed"] is allowed
    assert body.get("missing_scope") == missing


def test_route_decision_names_the_missing_scope(client, world):
    client_key, orders_rs, _ = world
    token = _mint(client, client_key, resource=ORDERS, scope="orders:read")
    body = _ask(client, orders_rs, token, method="POST", path="/v1/orders").json
    assert body["allowed"] is False and body["missing_scope"] == "orders:write"


def test_default_scope_for_unlisted_routes(app, client, world):
    from app.extensions import db
    from app.services import resources
    from app.services.audit import Actor

    with app.app_context():
        row = resources.get_resource(db.session, ORDERS)
        resources.update_resource(db.session, row, Actor.cli(),
                                  routes={**ORDER_ROUTES, "default": "orders:write"})
        db.session.commit()
    client_key, orders_rs, _ = world
    writer = _mint(client, client_key, resource=ORDERS, scope="orders:write")
    reader = _mint(client, client_key, resource=ORDERS, scope="orders:read")
    assert _ask(client, orders_rs, writer, method="PUT", path="/v1/x").json["allowed"] is True
    denied = _ask(client, orders_rs, reader, method="PUT", path="/v1/x").json
    assert denied["allowed"] is False and denied["missing_scope"] == "orders:write"


def test_inactive_tokens_get_no_route_decision(client, world):
    client_key, orders_rs, _ = world
    token = _mint(client, client_key, resource=REPORTS)
    assert _ask(client, orders_rs, token, method="GET", path="/v1/orders").json == {
        "active": False}
    assert _ask(client, orders_rs, "at_garbage", method="GET", path="/v1/orders").json == {
        "active": False}


@pytest.mark.parametrize(("extra", "says"), [
    ({"method": "GET"}, "'method' and 'path' go together."),
    ({"path": "/v1/orders"}, "'method' and 'path' go together."),
    ({"method": "FETCH", "path": "/v1/orders"}, "method must be one of"),
    ({"method": "GET", "path": "v1/orders"}, "path must be the request path"),
])
def test_bad_route_parameters_are_invalid_request(client, world, extra, says):
    client_key, orders_rs, _ = world
    token = _mint(client, client_key, resource=ORDERS)
    response = _ask(client, orders_rs, token, **extra)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert says in response.json["error_description"]


def test_an_unbound_key_has_no_route_policy_so_method_and_path_are_ignored(client, factory,
                                                                           world):
    client_key, _, _ = world
    unbound = factory.key(client_key.workspace, client_key.email, scopes="introspect")
    token = _mint(client, client_key, resource=ORDERS)
    plain = _ask(client, unbound, token)
    asked = _ask(client, unbound, token, method="GET", path="/v1/orders")
    assert asked.status_code == plain.status_code == 200
    assert asked.json == plain.json and asked.json["active"] is True
    assert "allowed" not in asked.json


def test_unbound_introspection_answers_as_before_plus_aud(client, factory, world):
    client_key, _, _ = world
    unbound = factory.key(client_key.workspace, client_key.email, scopes="introspect")
    body = introspect(client, unbound, _mint(client, client_key, resource=ORDERS))
    assert set(body) == {"active", "scope", "client_id", "sub", "username", "token_type",
                         "exp", "iat", "jti", "iss", "workspace_id", "aud"}


def test_bound_introspection_with_a_route_is_still_one_statement(app, client, world):
    client_key, orders_rs, _ = world
    warm = _mint(client, client_key, resource=ORDERS)
    _ask(client, orders_rs, warm, method="GET", path="/v1/orders")  # last_used_at, catalog
    token = _mint(client, client_key, resource=ORDERS)
    with counted(app) as count:
        body = _ask(client, orders_rs, token, method="GET", path="/v1/orders/1").json
    assert body["allowed"] is True
    _check("introspect", count)
    with counted(app) as count:
        _mint(client, client_key, resource=ORDERS)
    _check("token", count)


def test_keymint_own_api_is_a_resource(client, factory):
    own = "http://localhost/api/v1"
    slug_owner = factory.user()
    slug = factory.workspace(owner=slug_owner)
    key = factory.key(slug, slug_owner, scopes="keys:read")
    rs = factory.key(slug, slug_owner, scopes="introspect")
    token = _mint(client, key, resource=own)
    assert introspect(client, rs, token)["aud"] == [own]


def test_a_token_whose_key_lost_the_resource_meanwhile_is_inactive(app, client, world):
    """A key narrowed while one of its tokens was being minted: the token is inactive as a
    whole (as with scopes), read in the same statement."""
    from sqlalchemy import update

    from app.extensions import db
    from app.models import ApiKey

    client_key, orders_rs, _ = world
    token = _mint(client, client_key)  # audience: both resources (and keymint's API)
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.client_id == client_key.client_id)
                           .values(resources=ORDERS))
        db.session.commit()
    assert introspect(client, orders_rs, token) == {"active": False}


def test_route_decisions_on_keymint_own_api(client, factory):
    own = "http://localhost/api/v1"
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    admin_key = factory.key(slug, owner, scopes="keys:read keys:write introspect")
    admin = _mint(client, admin_key)
    created = client.post("/api/v1/keys", headers={"Authorization": f"Bearer {admin}"},
                          json={"name": "gw", "scopes": ["introspect"],
                                "introspects_for": own})
    assert created.status_code == 201, created.json
    gateway = (created.json["client_id"], created.json["client_secret"])
    reader = _mint(client, admin_key, resource=own, scope="keys:read")
    body = _ask(client, gateway, reader, method="GET", path="/api/v1/keys/key_abc").json
    assert body["allowed"] is True and body["aud"] == [own]
    denied = _ask(client, gateway, reader, method="DELETE", path="/api/v1/keys/key_abc").json
    assert denied["allowed"] is False and denied["missing_scope"] == "keys:write"
    unlisted = _ask(client, gateway, reader, method="GET", path="/api/v1/nothing").json
    assert unlisted == {**unlisted, "allowed": False} and "missing_scope" not in unlisted
