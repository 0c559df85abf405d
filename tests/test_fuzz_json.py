"""Property tests (hypothesis): any JSON body on any management route, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api import schemas
from tests.support import make_team

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Every /api/v1 route that reads a JSON body, with its schema: field names worth aiming at.
JSON_ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/keys"): schemas.KEY_CREATE,
    ("PATCH", "/api/v1/keys/<client_id>"): schemas.KEY_UPDATE,
    ("POST", "/api/v1/keys/<client_id>/rotate"): schemas.KEY_ROTATE,
    ("POST", "/api/v1/members"): schemas.MEMBER_ADD,
    ("PATCH", "/api/v1/members/<user_id>"): schemas.MEMBER_UPDATE,
    ("PATCH", "/api/v1/workspace"): schemas.WORKSPACE_UPDATE,
    ("POST", "/api/v1/webhooks"): schemas.WEBHOOK_CREATE,
    ("PATCH", "/api/v1/webhooks/<webhook_id>"): schemas.WEBHOOK_UPDATE,
}
# Write routes that read no body at all (the invitee's token, or the path, is the request).
BODYLESS_WRITES = {("POST", "/api/v1/invitations/<invitation_id>/accept"),
                   ("POST", "/api/v1/webhooks/<webhook_id>/test"),
                   ("POST", "/api/v1/webhooks/<webhook_id>/rotate-secret"),
                   ("POST", "/api/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/retry")}

# Any code point, lone UTF-16 surrogates included. Hypothesis leaves them out by default, and
# st.text() merges an alphabet of several character strategies back into one without them,
# hence lists of characters joined.
surrogate = st.characters(categories=["Cs"])
unicode_text = st.lists(st.one_of(st.characters(), surrogate), max_size=40).map("".join)
# Valid values with arbitrary text spliced in: what gets past the schema reaches the database.
SEEDS = {"name": "fuzz key", "scopes": "keys:read", "email": "x@example.com", "role": "admin",
         "expires_at": "2030-01-01T00:00:00Z"}
splice = st.lists(st.one_of(st.characters(exclude_categories=["Cc"]), surrogate),
                  min_size=1, max_size=4).map("".join)


def spliced(seed: str) -> st.SearchStrategy[str]:
    return st.builds(lambda at, text: seed[:at] + text + seed[at:],
                     st.integers(0, len(seed)), splice)


any_text = st.one_of(unicode_text, *(spliced(seed) for seed in SEEDS.values()))
json_scalar = st.one_of(any_text, st.integers(-2**63, 2**63), st.booleans(), st.none(),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from(["keys:read", "member", "admin", "owner",
                                         "x@example.com", "2030-01-01T00:00:00Z"]))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(unicode_text, inner, max_size=4)),
    max_leaves=10)


def body_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.one_of(st.sampled_from(sorted(schema["properties"])), unicode_text)
    return st.dictionaries(names, json_value, max_size=5)


def encoded(body: dict[str, Any], raw: bool) -> bytes:
    if not raw:  # what JSON libraries send: surrogates as \\uXXXX escapes, pure ASCII
        return json.dumps(body).encode("ascii")
    # Literal code points; a lone surrogate becomes bytes that are not UTF-8 at all.
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def assert_never_a_5xx(response) -> None:
    assert response.status_code < 500, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    if response.status_code >= 400:
        body = response.get_json()
        assert body["error"] == "invalid_request" or response.status_code != 400, body
        assert set(body) <= {"error", "error_description", "field"}
        assert isinstance(body.get("field", ""), str)
    # Whatever came in, the answer is valid UTF-8.
    response.get_data().decode("utf-8")


@pytest.fixture
def team(client, factory):
    return make_team(client, factory)


@pytest.fixture
def targets(app, factory, team):
    """What the {id} routes act on: a spare key of the owner, the team's member and a
    webhook endpoint."""
    from app.extensions import db
    from app.services import accounts, webhooks
    from app.services.audit import Actor

    spare = factory.key(team.slug, team["owner"].email, scopes="keys:read keys:write")
    with app.app_context():
        endpoint = webhooks.create_endpoint(
            db.session, accounts.get_workspace(db.session, team.slug).id, Actor.cli(),
            url="https://hooks.example.com/fuzz", allow_private=False).endpoint
        db.session.commit()
        webhook_id = endpoint.public_id
    return {"client_id": spare.client_id, "user_id": team["member"].user_id,
            "webhook_id": webhook_id}


def _path(rule: str, targets: dict[str, str]) -> str:
    for name, value in targets.items():
        rule = rule.replace(f"<{name}>", value)
    return rule


def test_every_json_route_is_fuzzed(app):
    writes = {(method, rule.rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/") for method in rule.methods
              if method in {"POST", "PATCH", "PUT"}}
    assert writes == set(JSON_ROUTES) | BODYLESS_WRITES


@FUZZ
@given(data=st.data(), raw=st.booleans())
def test_any_json_body_on_any_json_route_is_never_a_5xx(client, team, targets, data, raw):
    (method, rule), schema = data.draw(st.sampled_from(sorted(JSON_ROUTES.items())))
    path = _path(rule, targets)
    body = data.draw(body_for(schema))
    response = client.open(path, method=method, data=encoded(body, raw),
                           content_type="application/json", headers=team["owner"].headers)
    assert_never_a_5xx(response)


# (route, field) for every string field of every JSON route, arrays of strings included.
STRING_FIELDS = sorted(
    (route, name) for route, schema in JSON_ROUTES.items()
    for name, field in schema["properties"].items()
    if "string" in str(field.get("type")) or field.get("items", {}).get("type") == "string")


@FUZZ
@given(data=st.data())
def test_any_text_in_any_string_field_is_never_a_5xx(client, team, targets, data):
    (method, rule), field = data.draw(st.sampled_from(STRING_FIELDS))
    value = data.draw(st.one_of(unicode_text, spliced(SEEDS.get(field, ""))))
    path = _path(rule, targets)
    body = {field: [value] if field == "scopes" else value}
    if rule == "/api/v1/keys":  # the other required fields, so the value itself is judged
        body.setdefault("name", "fuzz")
        body.setdefault("scopes", ["keys:read"])
    response = client.open(path, method=method, data=json.dumps(body),
                           content_type="application/json", headers=team["owner"].headers)
    assert_never_a_5xx(response)
