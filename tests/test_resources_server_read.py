"""A resource server reads its own route policy with its own key's client credentials."""

import base64

import pytest

from tests.support import (
    ORDER_ROUTES,
    ORDERS,
    REPORTS,
    add_resource,
    audit_events,
    bearer,
    mint,
)

OWN_API = "http://localhost/api/v1"


@pytest.fixture
def world(app, factory):
    """Orders (with routes) and Reports; a reader key; the two resource servers' keys."""
    add_resource(app, ORDERS, "orders:read orders:write orders:items", ORDER_ROUTES)
    add_resource(app, REPORTS, "reports:read")
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    reader = factory.key(slug, owner, scopes="keys:read")
    orders_rs = factory.key(slug, owner, scopes="introspect", introspects_for=ORDERS)
    reports_rs = factory.key(slug, owner, scopes="introspect", introspects_for=REPORTS)
    return reader, orders_rs, reports_rs


def _ids(client, reader):
    listed = client.get("/api/v1/resources", headers=bearer(mint(client, reader))).json
    return {r["uri"]: r["id"] for r in listed["resources"]}


def test_a_resource_server_reads_its_own_policy_with_its_credentials(client, world):
    reader, orders_rs, _ = world
    ids = _ids(client, reader)
    response = client.get(f"/api/v1/resources/{ids[ORDERS]}", auth=orders_rs.auth)
    assert response.status_code == 200, response.json
    assert response.json["uri"] == ORDERS
    assert response.json["routes"]["routes"][1] == {"method": "GET", "path": "/v1/orders/{id}",
                                                    "scopes": ["orders:read"]}
    # the same document a keys:read Bearer token reads
    assert response.json == client.get(f"/api/v1/resources/{ids[ORDERS]}",
                                       headers=bearer(mint(client, reader))).json


def test_its_listing_holds_its_own_resource_only(client, world):
    _, orders_rs, reports_rs = world
    listed = client.get("/api/v1/resources", auth=orders_rs.auth)
    assert listed.status_code == 200
    assert [r["uri"] for r in listed.json["resources"]] == [ORDERS]
    assert [r["uri"] for r in client.get("/api/v1/resources", auth=reports_rs.auth)
            .json["resources"]] == [REPORTS]


def test_another_resource_is_as_unknown_to_it_as_a_missing_one(client, world):
    reader, orders_rs, _ = world
    ids = _ids(client, reader)
    other = client.get(f"/api/v1/resources/{ids[REPORTS]}", auth=orders_rs.auth)
    missing = client.get("/api/v1/resources/999999", auth=orders_rs.auth)
    own_api = client.get("/api/v1/resources/keymint", auth=orders_rs.auth)
    for response in (other, missing, own_api):
        assert response.status_code == 404
        assert response.json["error"] == "not_found"
    assert other.json["error_description"] == f"no resource {ids[REPORTS]!r}"


def test_a_server_of_keymint_own_api_reads_the_builtin_policy(client, factory):
    rs = factory.key(scopes="introspect", introspects_for=OWN_API, issuer="http://localhost")
    one = client.get("/api/v1/resources/keymint", auth=rs.auth)
    assert one.status_code == 200 and one.json["uri"] == OWN_API
    listed = client.get("/api/v1/resources", auth=rs.auth).json["resources"]
    assert [r["id"] for r in listed] == ["keymint"]


def test_a_key_serving_no_resource_is_forbidden(client, world, factory):
    reader, _, _ = world
    for path in ("/api/v1/resources", "/api/v1/resources/keymint"):
        response = client.get(path, auth=reader.auth)
        assert response.status_code == 403
        assert response.json["error"] == "forbidden"
        assert "introspects_for" in response.json["error_description"]


@pytest.mark.parametrize("how", ["wrong secret", "unknown key", "revoked key"])
def test_failed_client_authentication_is_401_basic_and_audited(app, client, world, how):
    from app.extensions import db
    from app.services import keys
    from app.services.audit import Actor

    _, orders_rs, _ = world
    auth = orders_rs.auth
    if how == "wrong secret":
        auth = (orders_rs.client_id, "sk_" + "A" * 46)
    elif how == "unknown key":
        auth = ("key_" + "a" * 24, orders_rs.secret)
    else:
        with app.app_context():
            keys.revoke_key(db.session, keys.get_key(db.session, orders_rs.client_id),
                            Actor.cli())
            db.session.commit()
    response = client.get("/api/v1/resources", auth=auth)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="keymint"'
    (event,) = audit_events(app, "client.auth_failed")
    reason = "wrong_secret" if how == "wrong secret" else "unknown_or_inactive_client"
    assert event.details == {"reason": reason}
    assert event.target_id == auth[0]


def test_a_malformed_basic_header_is_401_not_500(client, world):
    response = client.get("/api/v1/resources",
                          headers={"Authorization": "Basic %%%not-base64"})
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    no_colon = base64.b64encode(b"key_without_a_colon").decode()
    response = client.get("/api/v1/resources", headers={"Authorization": f"Basic {no_colon}"})
    assert response.status_code == 401


def test_bearer_reads_are_unchanged(client, world):
    _, orders_rs, _ = world
    assert client.get("/api/v1/resources").status_code == 401
    assert client.get("/api/v1/resources").headers["WWW-Authenticate"].startswith("Bearer")
    token = mint(client, orders_rs)  # introspect only: no keys:read
    response = client.get("/api/v1/resources", headers=bearer(token))
    assert response.status_code == 403 and response.json["error"] == "insufficient_scope"


def test_a_successful_read_marks_the_key_used(app, client, world):
    from sqlalchemy import select

    from app.extensions import db
    from app.models import ApiKey

    _, orders_rs, _ = world
    assert client.get("/api/v1/resources", auth=orders_rs.auth).status_code == 200
    with app.app_context():
        used = db.session.scalar(select(ApiKey.last_used_at)
                                 .where(ApiKey.client_id == orders_rs.client_id))
    assert used is not None
