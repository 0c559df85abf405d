"""GET /openapi.json: it documents exactly the server's routes, with the validator's schemas,
and the server keeps to it under Schemathesis-generated requests."""

from __future__ import annotations

import functools
import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support import ALL_SCOPES, bearer, make_team, mint

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def served_routes(app) -> set[tuple[str, str]]:
    """Every API route; the web console's HTML pages (/console/) are not part of the API."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/console" or rule.rule.startswith("/console/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, path))
    return routes


def documented_routes(document) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item if method in HTTP_METHODS}


@pytest.fixture
def document(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


def test_document_is_openapi_31(document):
    assert document["openapi"].startswith("3.1.")
    assert {"bearerAuth", "clientSecretBasic"} <= set(document["components"]["securitySchemes"])


def test_every_route_is_documented_and_every_documented_route_exists(app, document):
    served, documented = served_routes(app), documented_routes(document)
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes the server does not have"


def test_path_parameters_match_the_rules(document):
    for path, item in document["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def _resolve(document, schema):
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


JSON_ROUTES = [("post", "/api/v1/keys"), ("patch", "/api/v1/keys/{cid}"),
               ("post", "/api/v1/keys/{cid}/rotate"), ("post", "/api/v1/members"),
               ("patch", "/api/v1/members/{uid}"), ("patch", "/api/v1/workspace")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_request_schemas_are_the_validators_schemas(client, factory, document, monkeypatch):
    """One definition: the schema a view validates with is the one the document publishes."""
    from app.api import schemas
    from app.web import validation

    team = make_team(client, factory)
    owner = team["owner"]
    used = []
    real = validation.validate

    def spy(instance, schema):
        used.append(schema)
        return real(instance, schema)

    monkeypatch.setattr(validation, "validate", spy)
    by_name = {name: obj for name, obj in schemas.COMPONENTS.items()}
    for method, template in JSON_ROUTES:
        used.clear()
        path = template.format(cid=owner.key.client_id, uid=owner.user_id)
        getattr(client, method)(path, headers=owner.headers, json={"unknown_field": 1})
        assert len(used) == 1, (method, path)
        doc_path = template.replace("{cid}", "{client_id}").replace("{uid}", "{user_id}")
        ref = document["paths"][doc_path][method]["requestBody"]["content"][
            "application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        assert used[0] is by_name[name], (method, path, name)
        assert _resolve(document, {"$ref": ref}) == used[0]
    used.clear()
    client.get("/api/v1/keys", headers=owner.headers)
    listed = {p["name"]: p["schema"] for p in document["paths"]["/api/v1/keys"]["get"][
        "parameters"]}
    assert used == [schemas.KEY_LIST_QUERY]
    assert listed == schemas.KEY_LIST_QUERY["properties"]


def test_scopes_in_document_match_the_routes(client, factory, document):
    """The scope each operation lists is the one the route enforces."""
    team = make_team(client, factory)
    owner = team["owner"]
    # Routes any Bearer token may call: who the token's user is decides, not a scope.
    any_token = {("get", "/api/v1/me"), ("get", "/api/v1/invitations/{invitation_id}"),
                 ("post", "/api/v1/invitations/{invitation_id}/accept")}
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            scopes = {s for req in operation["security"] for s in req.get("bearerAuth", [])}
            if (method, path) in any_token:
                assert not scopes, (method, path)
                continue
            assert scopes, (method, path)
            others = " ".join(s for s in ALL_SCOPES.split() if s not in scopes)
            token = mint(client, owner.key, scope=others)
            url = path.replace("{client_id}", owner.key.client_id).replace(
                "{user_id}", owner.user_id)
            r = getattr(client, method)(url, headers=bearer(token), json={})
            assert r.status_code == 403 and r.get_json()["error"] == "insufficient_scope", (
                method, path)


# --- Schemathesis -------------------------------------------------------------------------
# One test per documented operation, generation mode and backend (schemathesis's own lazy
# pytest loader does not run on pytest 9.2), bounded so the whole run stays well under a
# minute per backend. Checks: no 5xx, documented status codes, content types, headers and
# response schemas, and invalid (negative) data rejected. Not checked: that every
# schema-valid request is accepted — OAuth answers schema-valid input with RFC 6749 400s
# (unknown token, invalid scope), and a cursor is only valid if the server issued it.


def _operations() -> list[tuple[str, str, bool]]:
    from app.api.openapi import build_document

    operations = []
    for path, item in build_document()["paths"].items():
        for method, operation in item.items():
            has_input = bool(operation.get("parameters") or operation.get("requestBody"))
            operations.append((method.upper(), path, has_input))
    return sorted(operations)


CASES = [pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
         for method, path, has_input in _operations()
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         # Nothing to make invalid in an operation without parameters or body.
         if has_input or mode == GenerationMode.POSITIVE]


@functools.cache
def _loaded_schema():
    """Parsed once per run (parsing is most of the cost); test_served_document_is_the_built_one
    proves the served document is this one."""
    from app.api.openapi import build_document

    return schemathesis.openapi.from_dict(build_document())


def test_served_document_is_the_built_one(document):
    from app.api.openapi import build_document

    assert document == json.loads(json.dumps(build_document()))


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_schemathesis(app, client, factory, method, path, mode):
    key = factory.key(scopes=ALL_SCOPES)  # the owner of a fresh workspace
    token = mint(client, key)
    schema = _loaded_schema()
    schema.app = app  # requests go to this test's app in-process (WSGI)
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(headers=bearer(token),
                               excluded_checks=[positive_data_acceptance])

    check()
