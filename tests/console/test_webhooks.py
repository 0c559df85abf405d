"""Webhooks pages (admins, owners): create with the secret shown once, the API's URL rules
next to the field, enable/disable, send a test, rotate, deliveries; members get 403 pages."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.extensions import db
from app.models import WebhookDelivery, WebhookEndpoint
from tests.console.admin_support import Acme, make_acme, submit, text

PAGE = "/console/w/acme/webhooks"
PUBLIC_URL = "https://93.184.216.34/hooks/keymint"  # a literal public address: no DNS


@pytest.fixture
def acme(app: Any, factory: Any) -> Acme:
    return make_acme(app, factory)


def endpoints(acme: Acme) -> list[WebhookEndpoint]:
    with acme.app.app_context():
        return list(db.session.query(WebhookEndpoint).order_by(WebhookEndpoint.id))


def create(acme: Acme, **fields: Any) -> Any:
    data = {"url": PUBLIC_URL, "description": "billing", "enabled": "on", **fields}
    return submit(acme.admin, PAGE, data, page=PAGE)


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(acme: Acme) -> None:
    response = create(acme, event_types=["key.created", "key.revoked"])
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = text(response)
    [secret] = re.findall(r'<code id="secret">(whsec_[^<]+)</code>', body)
    assert "it will not be shown again" in body
    [endpoint] = endpoints(acme)
    assert endpoint.url == PUBLIC_URL and endpoint.event_type_list == ["key.created",
                                                                        "key.revoked"]
    assert endpoint.enabled and endpoint.secret == secret
    [event] = acme.events("webhook.created")
    assert event.target_id == endpoint.public_id and event.actor_type == "user"
    # Never again: not on the list, not on the endpoint's page.
    for path in (PAGE, f"{PAGE}/{endpoint.public_id}"):
        page = acme.admin.get(path)
        assert page.status_code == 200 and secret not in text(page)
        assert PUBLIC_URL in text(page)


@pytest.mark.parametrize(("url", "message"), [
    ("http://93.184.216.34/hook", "The URL must use https."),
    ("https://127.0.0.1/hook", "The URL points at a private, loopback or link-local address."),
    ("https://user:pw@93.184.216.34/hook", "The URL must not carry credentials."),
])
def test_the_apis_url_rules_show_next_to_the_url(acme: Acme, url: str, message: str) -> None:
    response = create(acme, url=url)
    assert response.status_code == 400
    found = re.search(r'<p class="field-error" id="url-error">([^<]*)</p>', text(response))
    assert found and found.group(1) == message
    assert 'aria-invalid="true"' in text(response)
    assert endpoints(acme) == [] and acme.events("webhook.created") == []


def test_an_unknown_event_type_is_refused_next_to_the_events(acme: Acme) -> None:
    response = create(acme, event_types=["key.created", "key.exploded"])
    assert response.status_code == 400
    assert 'id="event_types-error">Unknown event type' in text(response)
    assert endpoints(acme) == []


def test_disable_enable_and_send_a_test_event(acme: Acme) -> None:
    create(acme)
    [endpoint] = endpoints(acme)
    detail = f"{PAGE}/{endpoint.public_id}"
    response = submit(acme.admin, f"{detail}/enabled", {"enabled": "off"}, page=detail)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{detail}?done=disabled"
    page = text(acme.admin.get(response.headers["Location"]))
    assert "Endpoint disabled" in page and "Enable endpoint" in page
    [row] = endpoints(acme)
    assert not row.enabled and row.disabled_reason == "disabled_by_user"
    submit(acme.admin, f"{detail}/enabled", {"enabled": "on"}, page=detail)
    assert endpoints(acme)[0].enabled
    assert [e.details["enabled"] for e in acme.events("webhook.updated")] == [
        {"from": True, "to": False}, {"from": False, "to": True}]

    response = submit(acme.admin, f"{detail}/test", page=detail)
    assert response.status_code == 303
    page = text(acme.admin.get(response.headers["Location"]))
    assert "Test event queued" in page
    assert "<code>webhook.test</code>" in page and "pending" in page
    with acme.app.app_context():
        assert db.session.query(WebhookDelivery).count() == 1
    assert len(acme.events("webhook.tested")) == 1


def test_a_bad_enabled_value_is_a_400_and_changes_nothing(acme: Acme) -> None:
    create(acme)
    [endpoint] = endpoints(acme)
    detail = f"{PAGE}/{endpoint.public_id}"
    response = submit(acme.admin, f"{detail}/enabled", {"enabled": "maybe"}, page=detail)
    assert response.status_code == 400
    assert "Choose enable or disable." in text(response)
    assert endpoints(acme)[0].enabled


def test_rotating_shows_the_new_secret_once(acme: Acme) -> None:
    create(acme)
    [endpoint] = endpoints(acme)
    old = endpoint.secret
    detail = f"{PAGE}/{endpoint.public_id}"
    response = submit(acme.owner, f"{detail}/rotate-secret", page=detail)
    assert response.status_code == 200
    [secret] = re.findall(r'<code id="secret">(whsec_[^<]+)</code>', text(response))
    assert secret != old and endpoints(acme)[0].secret == secret
    assert "keeps signing alongside it for 24 hours" in text(response)


def test_an_unknown_or_foreign_endpoint_is_a_404(acme: Acme) -> None:
    other = acme.factory.workspace(owner=acme.factory.user("x@example.com"), slug="globex")
    with acme.app.app_context():
        from app.services import accounts, webhooks
        from app.services.audit import Actor

        ws = accounts.get_workspace(db.session, other)
        foreign = webhooks.create_endpoint(db.session, ws.id, Actor.cli(), url=PUBLIC_URL,
                                           allow_private=False).endpoint.public_id
        db.session.commit()
    assert acme.owner.get(f"{PAGE}/{foreign}").status_code == 404
    assert acme.owner.get(f"{PAGE}/whe_nope").status_code == 404


def test_members_get_403_pages_for_every_webhook_url(acme: Acme) -> None:
    create(acme)
    [endpoint] = endpoints(acme)
    for path in (PAGE, f"{PAGE}/{endpoint.public_id}"):
        response = acme.member.get(path)
        assert response.status_code == 403
        assert "Only admins and owners" in text(response)
        assert PUBLIC_URL not in text(response)
    response = submit(acme.member, f"{PAGE}/{endpoint.public_id}/test",
                      page="/console/w/acme/keys")
    assert response.status_code == 403
    assert acme.events("webhook.tested") == []
