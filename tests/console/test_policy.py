"""Workspace policy page: owners change it (the API's rules and messages), others read it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.extensions import db
from app.services import accounts
from tests.console.admin_support import Acme, make_acme, submit, text

PAGE = "/console/w/acme/policy"
FIELDS = {"max_key_lifetime_days": "90", "default_key_lifetime_days": "30",
          "token_ttl_seconds": "600", "token_format": "opaque"}


@pytest.fixture
def acme(app: Any, factory: Any) -> Acme:
    return make_acme(app, factory)


def policy(acme: Acme) -> tuple[Any, ...]:
    with acme.app.app_context():
        ws = accounts.get_workspace(db.session, "acme")
        return (ws.max_key_lifetime_days, ws.default_key_lifetime_days, ws.token_ttl_seconds,
                ws.token_format)


def test_the_owner_saves_the_policy_and_it_is_audited(acme: Acme) -> None:
    page = acme.owner.get(PAGE)
    assert page.status_code == 200
    assert "<h1>Workspace policy</h1>" in text(page) and "Save policy" in text(page)
    response = submit(acme.owner, PAGE, FIELDS, page=PAGE)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{PAGE}?saved=1"
    assert policy(acme) == (90, 30, 600, "opaque")
    assert "Policy saved." in text(acme.owner.get(response.headers["Location"]))
    [event] = acme.events("workspace.policy_changed")
    assert event.details["max_key_lifetime_days"] == {"from": 365, "to": 90}
    # An empty field clears the setting, as null does in the API.
    submit(acme.owner, PAGE, {**FIELDS, "max_key_lifetime_days": "",
                              "default_key_lifetime_days": ""}, page=PAGE)
    assert policy(acme) == (None, None, 600, "opaque")


@pytest.mark.parametrize(("changes", "field", "status", "message"), [
    ({"default_key_lifetime_days": "120"}, "default_key_lifetime_days", 400,
     "The default key lifetime (days) cannot exceed the maximum key lifetime (days)."),
    ({"token_ttl_seconds": "999999"}, "token_ttl_seconds", 400,
     "The access token lifetime (seconds) must be between 1 and 86400."),
    ({"max_key_lifetime_days": "ten"}, "max_key_lifetime_days", 400,
     "The maximum key lifetime (days) must be a whole number, or empty for no limit."),
    ({"token_format": "jwt"}, "token_format", 400,
     "This server cannot issue JWT access tokens: it has no KEYMINT_SIGNING_KEY_ENCRYPTION_KEY."),
])
def test_a_refused_change_shows_the_message_next_to_its_field_and_changes_nothing(
        acme: Acme, changes: dict[str, str], field: str, status: int, message: str) -> None:
    before = policy(acme)
    response = submit(acme.owner, PAGE, {**FIELDS, **changes}, page=PAGE)
    assert response.status_code == status
    body = text(response)
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', body)
    assert found and found.group(1) == message
    assert re.search(rf'aria-describedby="[^"]*{field}-error"', body)
    assert policy(acme) == before
    assert acme.events("workspace.policy_changed") == []


@pytest.mark.parametrize("who", ["admin", "member"])
def test_others_read_the_policy_but_cannot_change_it(acme: Acme, who: str) -> None:
    client = getattr(acme, who)
    page = client.get(PAGE)
    assert page.status_code == 200
    body = text(page)
    assert "Only owners of" in body and "Save policy" not in body
    assert 'value="365"' in body and "disabled" in body
    before = policy(acme)
    response = submit(client, PAGE, {**FIELDS, "max_key_lifetime_days": "1"}, page=PAGE)
    assert response.status_code == 403
    assert "Only owners can change the workspace policy." in text(response)
    assert policy(acme) == before
