"""Lone UTF-16 surrogates in management API JSON bodies are 400s naming the field (#15)."""

from __future__ import annotations

import json

import pytest

from tests.support import make_team

JSON = "application/json"
# The raw bytes a client sends: a JSON escape for a lone surrogate, valid JSON and valid UTF-8.
SURROGATES = ["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d", "\\udead\\ud800"]


@pytest.fixture
def team(client, factory):
    return make_team(client, factory)


def _body(**fields: str) -> str:
    # json.dumps would escape the backslash; splice the raw escape into the document instead.
    return "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"


def _assert_names_field(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.data[:300])
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert body["field"] == field
    assert set(body) == {"error", "error_description", "field"}
    assert field in body["error_description"]
    # The answer never echoes the surrogate back.
    assert "\\ud" not in response.get_data(as_text=True).lower()


@pytest.mark.parametrize("value", SURROGATES)
def test_create_key_with_a_surrogate_in_the_name(client, team, value):
    response = client.post("/api/v1/keys", headers=team["owner"].headers, content_type=JSON,
                           data=_body(name=f'"{value}"', scopes='["keys:read"]'))
    _assert_names_field(response, "name")


def test_create_key_with_a_surrogate_in_a_scope(client, team):
    response = client.post("/api/v1/keys", headers=team["owner"].headers, content_type=JSON,
                           data=_body(name='"ok"', scopes='["keys:read", "\\ud800"]'))
    _assert_names_field(response, "scopes")


def test_create_key_with_a_surrogate_in_expires_at(client, team):
    response = client.post("/api/v1/keys", headers=team["owner"].headers, content_type=JSON,
                           data=_body(name='"ok"', scopes='["keys:read"]',
                                      expires_at='"2030-01-01T00:00:00Z\\ud800"'))
    _assert_names_field(response, "expires_at")


@pytest.mark.parametrize("value", SURROGATES[:2])
def test_rename_key_with_a_surrogate(client, team, value):
    client_id = team["owner"].key.client_id
    response = client.patch(f"/api/v1/keys/{client_id}", headers=team["owner"].headers,
                            content_type=JSON, data=_body(name=f'"{value}"'))
    _assert_names_field(response, "name")
    # Nothing changed.
    read = client.get(f"/api/v1/keys/{client_id}", headers=team["owner"].headers)
    assert read.get_json()["name"] == "test key"


@pytest.mark.parametrize("value", SURROGATES[:2])
def test_add_member_with_a_surrogate_in_the_email(client, team, value):
    response = client.post("/api/v1/members", headers=team["owner"].headers,
                           content_type=JSON, data=_body(email=f'"x{value}@example.com"'))
    _assert_names_field(response, "email")


def test_add_member_with_a_surrogate_in_the_role(client, factory, team):
    email = factory.user()
    response = client.post("/api/v1/members", headers=team["owner"].headers,
                           content_type=JSON,
                           data=_body(email=json.dumps(email), role='"admin\\ud800"'))
    _assert_names_field(response, "role")


def test_a_surrogate_in_a_field_name_is_a_400_without_echoing_it(client, team):
    response = client.post("/api/v1/keys", headers=team["owner"].headers, content_type=JSON,
                           data='{"name": "ok", "scopes": ["keys:read"], "\\ud800x": 1}')
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert "\\ud" not in response.get_data(as_text=True).lower()


def test_a_surrogate_pair_is_ordinary_text(client, team):
    # A correctly paired escape is one character (U+1F511) and stays accepted.
    response = client.post("/api/v1/keys", headers=team["owner"].headers, content_type=JSON,
                           data=_body(name='"key \\ud83d\\udd11"', scopes='["keys:read"]'))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "key \U0001f511"
