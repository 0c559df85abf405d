"""Webhook endpoints and the outbox: target rules, secrets, events written with their change."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, WebhookEndpoint
from app.services import accounts, keys, webhooks
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput
from tests.support import all_rows, audit_events
from tests.webhook_support import events, make_endpoint, workspace_id

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def _public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x",             # plain http
    "https://127.0.0.1/x", "https://10.1.2.3/x", "https://192.168.0.5/x",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://[fd00::1]/x",
    "https://[::ffff:127.0.0.1]/x", "https://100.64.0.1/x", "https://0.0.0.0/x",
    "https://localhost/x", "https://api.localhost/x", "https://metadata.google.internal/x",
    "https://user:pass@hooks.example.com/x", "ftp://hooks.example.com/x", "https:///x",
    "https://hooks.example.com/x#frag", "https://hooks.example.com/ x", "https://hooks.éx.com/",
    "https://hooks.example.com:99999/x", "https://hooks.example.com:0/x", "",
])
def test_a_target_keymint_must_not_post_to_is_refused(url):
    with pytest.raises(InvalidInput) as caught:
        webhooks.check_url(url, allow_private=False, resolver=_public)
    assert caught.value.field == "url"


def test_a_name_resolving_to_a_private_address_is_refused_at_creation_and_delivery():
    def rebinding(host, port):
        return ["93.184.215.14", "127.0.0.1"]

    with pytest.raises(InvalidInput, match="resolves to a private"):
        webhooks.check_url("https://hooks.example.com/x", allow_private=False, resolver=rebinding)
    with pytest.raises(InvalidInput, match="resolves to a private"):
        webhooks.delivery_addresses("https://hooks.example.com/x", allow_private=False,
                                    resolver=rebinding)


def test_public_https_targets_pass_and_the_switch_allows_private_http():
    assert webhooks.check_url("https://hooks.example.com:8443/k?a=1", allow_private=False,
                              resolver=_public).port == 8443
    assert webhooks.check_url("http://127.0.0.1:9/x", allow_private=True).host == "127.0.0.1"
    target, addresses = webhooks.delivery_addresses("http://127.0.0.1:9/x", allow_private=True)
    assert addresses == ["127.0.0.1"] and target.scheme == "http"


@pytest.fixture
def workspace(factory):
    owner = factory.user()
    return factory.workspace(owner=owner), owner


def test_the_secret_is_a_standard_webhooks_secret_shown_once_and_the_creation_audited(
        app, workspace):
    slug, _ = workspace
    public_id, secret = make_endpoint(app, slug, "http://127.0.0.1:1/hook?token=abc123",
                                      event_types=["key.created"])
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    [event] = audit_events(app, "webhook.created")
    assert event.target_id == public_id
    assert event.details["event_types"] == ["key.created"]
    assert event.details["url"] == "http://127.0.0.1:1/hook?…"  # a token in the query stays out
    assert secret not in json.dumps(event.details)


@pytest.mark.parametrize(("field", "value"), [
    ("event_types", ["key.created", "key.exploded"]), ("event_types", "key.created"),
    ("expiring_days", [0]), ("expiring_days", [366]), ("expiring_days", []),
    ("description", "bell\x07"),
])
def test_bad_endpoint_settings_are_refused_naming_the_field(app, workspace, field, value):
    with app.app_context(), pytest.raises(InvalidInput) as caught:
        webhooks.create_endpoint(db.session, workspace_id(app, workspace[0]), Actor.cli(),
                                 url="http://127.0.0.1:1/", allow_private=True,
                                 **{field: value})
    assert caught.value.field == field


@dataclass
class Made:
    client_id: str
    client_secret: str
    user_id: int
    id: int


def _create_key(app, slug, email, **kwargs):
    with app.app_context():
        created = keys.create_key(db.session, accounts.get_workspace(db.session, slug),
                                  accounts.get_user_by_email(db.session, email), Actor.cli(),
                                  name="ci deploy", scopes="read", **kwargs)
        db.session.commit()
        key = created.key
        return Made(key.client_id, created.client_secret, key.user_id, key.id)


def test_key_events_reach_the_endpoints_that_want_them_with_public_facts_only(
        app, factory, workspace):
    slug, owner = workspace
    every, _ = make_endpoint(app, slug, "http://127.0.0.1:1/all")
    only_revoked, _ = make_endpoint(app, slug, "http://127.0.0.1:1/r",
                                    event_types=["key.revoked"])
    elsewhere = factory.workspace(owner=owner)
    make_endpoint(app, elsewhere, "http://127.0.0.1:1/other")
    created = _create_key(app, slug, owner, expires_in_days=30)
    with app.app_context():
        key = keys.get_key(db.session, created.client_id)
        rotated = keys.rotate_secret(db.session, key, Actor.cli())
        keys.revoke_key(db.session, key, Actor.cli())
        db.session.commit()
    assert [e.type for e in events(app)] == ["key.created", "key.secret_rotated",
                                             "key.revoked"]
    created_event = events(app, "key.created")[0]
    assert created_event.workspace_id == workspace_id(app, slug)
    assert created_event.data == {
        "client_id": created.client_id, "name": "ci deploy",
        "user_id": str(created.user_id), "scopes": ["read"],
        "expires_at": created_event.data["expires_at"]}
    per_endpoint = {}
    with app.app_context():
        ids = {e.id: e.public_id for e in db.session.scalars(select(WebhookEndpoint))}
    for row in all_rows(app, "webhook_deliveries"):
        per_endpoint.setdefault(ids[row["endpoint_id"]], []).append(row["event_id"])
    assert len(per_endpoint[every]) == 3 and len(per_endpoint[only_revoked]) == 1
    dump = json.dumps([e.data for e in events(app)])
    digests = [r["digest"] for r in all_rows(app, "key_secrets")]
    for secret in (created.client_secret, rotated.client_secret, *digests):
        assert secret not in dump


def test_member_events_are_emitted(app, factory, workspace):
    slug, _ = workspace
    make_endpoint(app, slug, "http://127.0.0.1:1/m", event_types=["member.added",
                                                                  "member.removed"])
    email = factory.member(slug)
    with app.app_context():
        ws = accounts.get_workspace(db.session, slug)
        membership = accounts.get_membership(db.session, ws,
                                             accounts.get_user_by_email(db.session, email))
        accounts.remove_member(db.session, membership, Actor.cli())
        db.session.commit()
    added, removed = events(app)
    assert (added.type, added.data["email"], added.data["role"]) == ("member.added", email,
                                                                      "member")
    assert removed.type == "member.removed" and removed.data["user_id"] == added.data["user_id"]


def test_a_disabled_endpoint_or_a_workspace_without_endpoints_queues_nothing(app, workspace):
    slug, owner = workspace
    _create_key(app, slug, owner)
    make_endpoint(app, slug, "http://127.0.0.1:1/x", enabled=False)
    _create_key(app, slug, owner)
    assert events(app) == [] and all_rows(app, "webhook_deliveries") == []


def test_the_event_and_its_change_roll_back_together(app, workspace):
    slug, owner = workspace
    make_endpoint(app, slug, "http://127.0.0.1:1/x")
    created = _create_key(app, slug, owner)
    before = len(events(app))
    with app.app_context():
        key = keys.get_key(db.session, created.client_id)
        keys.revoke_key(db.session, key, Actor.cli())
        db.session.rollback()  # e.g. the commit failed: neither the revocation nor its event
    assert len(events(app)) == before
    with app.app_context():
        assert db.session.get(ApiKey, created.id).revoked_at is None
        owner_membership = accounts.get_membership(
            db.session, accounts.get_workspace(db.session, slug),
            accounts.get_user_by_email(db.session, owner))
        with pytest.raises(Conflict):  # the last owner: the change fails, nothing is queued
            accounts.remove_member(db.session, owner_membership, Actor.cli())
        db.session.rollback()
    assert len(events(app)) == before


def test_the_previous_secret_signs_for_exactly_24_hours_after_a_rotation(app, workspace):
    slug, _ = workspace
    public_id, first = make_endpoint(app, slug, "http://127.0.0.1:1/x")
    with freeze_time(T0), app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        second = webhooks.rotate_secret(db.session, endpoint, Actor.cli()).secret
        db.session.commit()
    assert second != first and second.startswith("whsec_")
    with app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        just_before = T0 + timedelta(hours=24) - timedelta(microseconds=1)
        assert endpoint.signing_secrets(just_before) == [second, first]
        assert endpoint.signing_secrets(T0 + timedelta(hours=24)) == [second]
    [event] = audit_events(app, "webhook.secret_rotated")
    assert first not in json.dumps(event.details) and second not in json.dumps(event.details)


def test_signatures_verify_with_the_standardwebhooks_package(app, workspace):
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    slug, owner = workspace
    public_id, secret = make_endpoint(app, slug, "http://127.0.0.1:1/x")
    _create_key(app, slug, owner)
    [event] = events(app)
    with app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        body = webhooks.body_of(event)
        headers = webhooks.signed_headers(endpoint, event, body, datetime.now(UTC))
    assert headers["webhook-id"] == event.public_id
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "key.created" and payload["id"] == event.public_id
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"ci deploy", b"ci deplox"), headers)
