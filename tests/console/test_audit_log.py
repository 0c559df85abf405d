"""Audit log page: the API's filters and cursor pages; members see only their own keys' events."""

from __future__ import annotations

import re
from typing import Any

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.services import accounts
from app.services import keys as key_service
from app.services.audit import Actor
from tests.console.admin_support import MEMBER, OWNER, Acme, make_acme, text
from tests.support import user_id

PAGE = "/console/w/acme/audit"


@pytest.fixture
def acme(app: Any, factory: Any) -> Acme:
    return make_acme(app, factory)


def actions(body: str) -> list[str]:
    return re.findall(r"<td><code>([a-z_.]+)</code></td>", body)


def test_admins_see_the_workspace_trail_newest_first(acme: Acme) -> None:
    acme.factory.key("acme", MEMBER, name="member key")
    page = acme.owner.get(PAGE)
    assert page.status_code == 200
    body = text(page)
    assert "<h1>Audit log</h1>" in body
    shown = actions(body)
    assert shown[0] == "key.created"  # the newest
    assert "member.added" in shown and "console.signed_in" in shown
    assert f"user {user_id(acme.app, OWNER)} ({OWNER})" in body  # ids with their emails


def test_a_member_sees_only_events_about_their_own_keys(acme: Acme) -> None:
    own = acme.factory.key("acme", MEMBER, name="mine")
    other = acme.factory.key("acme", OWNER, name="theirs")
    body = text(acme.member.get(PAGE))
    assert "You see the events about your own keys" in body
    assert own.client_id in body and other.client_id not in body
    assert set(actions(body)) == {"key.created"}


@pytest.mark.parametrize(("query", "expected"), [
    ("action=key.created", {"key.created"}),
    ("action=member.", {"member.added"}),
])
def test_the_action_filter_as_in_the_api(acme: Acme, query: str, expected: set[str]) -> None:
    acme.factory.key("acme", MEMBER)
    body = text(acme.owner.get(f"{PAGE}?{query}"))
    assert set(actions(body)) == expected


def test_the_key_and_actor_filters(acme: Acme) -> None:
    one = acme.factory.key("acme", MEMBER, name="one")
    acme.factory.key("acme", MEMBER, name="two")
    body = text(acme.owner.get(f"{PAGE}?key={one.client_id}"))
    assert actions(body) == ["key.created"] and one.client_id in body
    owner_id = user_id(acme.app, OWNER)
    body = text(acme.owner.get(f"{PAGE}?actor={owner_id}"))
    assert set(actions(body)) == {"console.signed_in"}  # what the owner did: signing in


def test_since_and_until_take_a_browser_datetime_as_utc(acme: Acme) -> None:
    with freeze_time("2031-05-01T10:00:00Z"), acme.app.app_context():
        user = accounts.get_user_by_email(db.session, MEMBER)
        ws = accounts.get_workspace(db.session, "acme")
        key_service.create_key(db.session, ws, user, Actor.cli(), name="in may",
                               scopes=[])
        db.session.commit()
    body = text(acme.owner.get(f"{PAGE}?since=2031-05-01T10:00&until=2031-05-01T10:00:01"))
    assert actions(body) == ["key.created"]
    # One second later the window is empty (until is exclusive).
    body = text(acme.owner.get(f"{PAGE}?since=2031-05-01T10:00:01Z"))
    assert actions(body) == [] and "No events match these filters" in body


@pytest.mark.parametrize(("query", "field", "message"), [
    ("action=Bad Action", "action", "Action must be an action name like key.created"),
    ("key=not-a-key", "key", "Key must be a client_id (key_...)."),
    ("since=yesterday", "since", "Since must be a date and time like 2030-01-31T09:00 (UTC)"),
    ("since=2030-01-02T00:00Z&until=2030-01-01T00:00Z", "since", "Since must be before until."),
])
def test_a_bad_filter_is_a_400_with_the_message_next_to_it(acme: Acme, query: str, field: str,
                                                           message: str) -> None:
    response = acme.owner.get(f"{PAGE}?{query}")
    assert response.status_code == 400
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', text(response))
    assert found and found.group(1).startswith(message)


def test_cursor_pages_walk_every_event_once(acme: Acme) -> None:
    for n in range(60):
        acme.factory.key("acme", MEMBER, name=f"k{n}")
    seen: list[str] = []
    url = f"{PAGE}?action=key.created"
    pages = 0
    while url:
        body = text(acme.owner.get(url))
        seen += re.findall(r"<td>key <code>(key_[A-Za-z0-9_]+)</code></td>", body)
        more = re.search(r'href="([^"]*cursor=[^"]+)">Older events', body)
        url = more.group(1).replace("&amp;", "&") if more else ""
        pages += 1
        if more:
            assert "action=key.created" in url  # the filter stays on the next page
    assert pages == 2
    assert len(seen) == 60 and len(set(seen)) == 60
    bad = acme.owner.get(f"{PAGE}?cursor=nonsense")
    assert bad.status_code == 400
