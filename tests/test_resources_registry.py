"""Registering resources: validation with clear errors, the CLI, auditing, retiring."""

import json

import pytest

from app.extensions import db
from app.services import resources
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput
from tests.support import ORDER_ROUTES, ORDERS, REPORTS, add_resource, audit_events


def _create(app, uri=ORDERS, scopes="orders:read orders:write orders:items", routes=None):
    with app.app_context():
        try:
            return resources.create_resource(db.session, Actor.cli(), uri=uri, name="Orders",
                                             scopes=scopes, routes=routes)
        finally:
            db.session.rollback()


@pytest.mark.parametrize(("uri", "says"), [
    ("orders.example.com", "absolute"),
    ("/v1/orders", "absolute"),
    ("https://orders.example.com/#frag", "fragment"),
    ("https://orders.example.com/?a=1", "query"),
    ("ftp://orders.example.com", "absolute"),
    ("https://orders.example.com/a b", "no spaces"),
])
def test_malformed_uris_are_refused_naming_the_value(app, uri, says):
    with pytest.raises(InvalidInput) as caught:
        _create(app, uri=uri)
    assert says in caught.value.message and uri.split(" ")[0][:20] in caught.value.message


def test_duplicate_identifier_is_a_conflict(app):
    add_resource(app, ORDERS, "orders:read")
    with pytest.raises(Conflict, match="already registered"):
        _create(app)


@pytest.mark.parametrize(("routes", "says"), [
    ({"routes": [{"method": "GET", "path": "v1/orders", "scopes": ["orders:read"]}]},
     "route 1: path must be a string starting with '/'"),
    ({"routes": [{"method": "GET", "path": "/v1/orders", "scopes": ["orders:read"]},
                 {"method": "GET", "path": "/v1/{id", "scopes": ["orders:read"]}]},
     "route 2: path template '/v1/{id' does not parse"),
    ({"routes": [{"method": "FETCH", "path": "/v1", "scopes": ["orders:read"]}]},
     "route 1: method must be one of"),
    ({"routes": [{"method": "GET", "path": "/v1", "scopes": ["billing:read"]}]},
     "route 1: scope 'billing:read' is not one of the resource's scopes"),
    ({"routes": [{"method": "GET", "path": "/v1/{a}", "scopes": ["orders:read"]},
                 {"method": "get", "path": "/v1/{b}", "scopes": ["orders:read"]}]},
     "route 2: GET /v1/{b} repeats route 1"),
    ({"routes": [{"method": "GET", "path": "/v1/{a}/{a}", "scopes": ["orders:read"]}]},
     "appears twice"),
    ({"default": "allow"}, "default must be 'deny' or one of the resource's scopes"),
    ({"routes": [{"method": "GET", "path": "/v1", "scopes": []}]}, "route 1: scopes must be"),
    ({"routes": [{"method": "GET", "path": "/v1", "scope": ["orders:read"]}]},
     "route 1: unknown field 'scope'"),
    ([], "a route file is a JSON object"),
])
def test_route_files_are_checked_rule_by_rule(app, routes, says):
    with pytest.raises(InvalidInput) as caught:
        _create(app, routes=routes)
    assert says in caught.value.message


def test_resource_scopes_are_checked(app):
    with pytest.raises(InvalidInput, match="at least one scope"):
        _create(app, scopes="")
    with pytest.raises(InvalidInput, match="keymint's own scope"):
        _create(app, scopes="orders:read introspect")
    with pytest.raises(InvalidInput, match="invalid scope"):
        _create(app, scopes='orders:"read"')


def test_cli_create_list_show_update_delete(app, tmp_path):
    runner = app.test_cli_runner()
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(ORDER_ROUTES))
    created = runner.invoke(args=["resources", "create", ORDERS, "--name", "Orders",
                                  "--scope", "orders:read orders:write", "--scope",
                                  "orders:items", "--routes", str(routes), "--json"])
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["scopes"] == ["orders:read", "orders:write", "orders:items"]
    assert data["routes"]["default"] == "deny" and len(data["routes"]["routes"]) == 4

    listed = runner.invoke(args=["resources", "list"])
    assert ORDERS in listed.output and "4 routes" in listed.output
    shown = runner.invoke(args=["resources", "show", ORDERS])
    assert "GET     /v1/orders/{id}/items  -> orders:items" in shown.output

    changed = runner.invoke(args=["resources", "update", ORDERS, "--name", "Orders v2",
                                  "--clear-routes", "--json"])
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.output)["routes"] is None

    deleted = runner.invoke(args=["resources", "delete", ORDERS])
    assert deleted.exit_code == 0, deleted.output
    gone = runner.invoke(args=["resources", "show", ORDERS])
    assert gone.exit_code == 1 and "no resource" in gone.output

    actions = [e.action for e in audit_events(app) if e.action.startswith("resource.")]
    assert actions == ["resource.created", "resource.updated", "resource.deleted"]


def test_cli_route_file_syntax_error_names_the_line(app, tmp_path):
    bad = tmp_path / "routes.json"
    bad.write_text('{"default": "deny",\n "routes": [\n  {"method": "GET",}\n]}')
    result = app.test_cli_runner().invoke(args=["resources", "create", ORDERS, "--name", "O",
                                                "--scope", "orders:read", "--routes", str(bad)])
    assert result.exit_code == 1
    assert "not JSON (line 3" in result.output


def test_update_keeps_the_policy_consistent_with_the_scopes(app):
    add_resource(app, ORDERS, "orders:read orders:write orders:items", ORDER_ROUTES)
    with app.app_context():
        row = resources.get_resource(db.session, ORDERS)
        with pytest.raises(InvalidInput, match="scope 'orders:items' is not one of"):
            resources.update_resource(db.session, row, Actor.cli(),
                                      scopes="orders:read orders:write")
        db.session.rollback()


def test_delete_is_refused_while_a_live_key_is_restricted_to_it(app, factory):
    add_resource(app, ORDERS, "orders:read")
    add_resource(app, REPORTS, "reports:read")
    key = factory.key(scopes="orders:read", resources=[ORDERS])
    server = factory.key(scopes="introspect", introspects_for=REPORTS)
    with app.app_context():
        for uri, holder in ((ORDERS, key), (REPORTS, server)):
            row = resources.get_resource(db.session, uri)
            with pytest.raises(Conflict) as caught:
                resources.delete_resource(db.session, row, Actor.cli())
            assert holder.client_id in caught.value.message
            db.session.rollback()
    # Retiring: revoke (or narrow) the keys that use it, then delete.
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "revoke", key.client_id]).exit_code == 0
    assert runner.invoke(args=["resources", "delete", ORDERS]).exit_code == 0


def test_audit_details_of_a_registration(app):
    add_resource(app, ORDERS, "orders:read orders:write orders:items", ORDER_ROUTES)
    (event,) = audit_events(app, "resource.created")
    assert event.target_type == "resource" and event.target_id == ORDERS
    assert event.details == {"name": "an API", "scopes": ["orders:read", "orders:write",
                                                          "orders:items"],
                             "routes": 4, "default": "deny"}


def test_an_expired_key_no_longer_holds_a_resource_exactly_at_its_expiry(app, factory):
    from datetime import UTC, datetime, timedelta

    from freezegun import freeze_time

    add_resource(app, ORDERS, "orders:read")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with freeze_time(start):
        key = factory.key(scopes="orders:read", resources=[ORDERS], expires_in_days=1)
    end = start + timedelta(days=1)
    with app.app_context():
        row = resources.get_resource(db.session, ORDERS)
        with freeze_time(end - timedelta(microseconds=1)):
            with pytest.raises(Conflict, match=key.client_id):
                resources.delete_resource(db.session, row, Actor.cli())
            db.session.rollback()
        row = resources.get_resource(db.session, ORDERS)
        with freeze_time(end):
            resources.delete_resource(db.session, row, Actor.cli())
            db.session.commit()


def test_keymint_own_api_cannot_be_registered_again(app, app_factory, database_url):
    app, _ = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com")
    result = app.test_cli_runner().invoke(args=["resources", "create",
                                                "https://auth.example.com/api/v1",
                                                "--name", "mine", "--scope", "keys:read"])
    assert result.exit_code == 1 and "keymint's own API" in result.output


def test_the_builtin_policy_names_every_management_api_route(app):
    # A route missing from keymint's own policy would be denied to every route-checking
    # resource server by the policy's default; one listed but gone would mislead.
    from app.services.resources import _BUILTIN_ROUTES

    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.startswith("/api/v1/legacy/"):
            continue
        template = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method, template))
    listed = {(method, path) for method, path, _ in _BUILTIN_ROUTES}
    assert listed == served
