"""Notices found by time (key.expiring thresholds, key.expired, the previous secret's grace
ending) at their exact boundaries, each once; and token.reuse_detected from /oauth/rotate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.services import keys, webhooks
from app.services.audit import Actor
from tests.support import add_legacy_key, mint
from tests.webhook_support import events, make_endpoint, workspace_id

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=40)
US = timedelta(microseconds=1)


def _scan(app, now):
    with freeze_time(now), app.app_context():
        queued = webhooks.scan_schedule(db.session, now)
        db.session.commit()
        return queued


@pytest.fixture
def world(factory):
    owner = factory.user()
    return factory.workspace(owner=owner, max_key_lifetime_days=None), owner


def _key(factory, slug, owner, expires_at):
    with freeze_time(T0):
        return factory.key(slug, owner, scopes="read", expires_at=expires_at)


def _notices(app, event_type):
    return [e.data for e in events(app, event_type)]


def test_each_expiring_threshold_fires_once_at_its_exact_instant(app, factory, world):
    slug, owner = world
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x", event_types=["key.expiring"])
    key = _key(factory, slug, owner, EXPIRES)
    for days in (30, 7, 1):
        moment = EXPIRES - timedelta(days=days)
        assert _scan(app, moment - US) == 0, days
        assert _scan(app, moment) == 1, days
        assert _scan(app, moment) == 0, days  # once per key and threshold
    notices = _notices(app, "key.expiring")
    assert [n["days"] for n in notices] == [30, 7, 1]
    assert {n["client_id"] for n in notices} == {key.client_id}
    assert notices[0]["expires_at"] == "2030-07-11T12:00:00Z"


def test_thresholds_crossed_together_give_one_notice_the_nearest(app, factory, world):
    slug, owner = world
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x", event_types=["key.expiring"])
    _key(factory, slug, owner, T0 + timedelta(days=5))
    assert _scan(app, T0) == 1
    assert [n["days"] for n in _notices(app, "key.expiring")] == [7]
    assert _scan(app, T0 + timedelta(days=4)) == 1  # the 1-day threshold still comes
    assert [n["days"] for n in _notices(app, "key.expiring")] == [7, 1]


def test_an_endpoint_s_own_thresholds_apply(app, factory, world):
    slug, owner = world
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x", event_types=["key.expiring"],
                      expiring_days=[14])
    _key(factory, slug, owner, EXPIRES)
    assert _scan(app, EXPIRES - timedelta(days=30)) == 0
    assert _scan(app, EXPIRES - timedelta(days=14)) == 1
    assert _scan(app, EXPIRES - timedelta(days=1)) == 0


def test_key_expired_fires_once_when_the_expiry_passes_and_not_for_revoked_keys(
        app, factory, world):
    slug, owner = world
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x", event_types=["key.expired"])
    key = _key(factory, slug, owner, EXPIRES)
    revoked = _key(factory, slug, owner, EXPIRES)
    with app.app_context():
        keys.revoke_key(db.session, keys.get_key(db.session, revoked.client_id), Actor.cli())
        db.session.commit()
    assert _scan(app, EXPIRES - US) == 0
    assert _scan(app, EXPIRES) == 1
    assert _scan(app, EXPIRES + timedelta(days=3)) == 0
    assert [n["client_id"] for n in _notices(app, "key.expired")] == [key.client_id]


def test_the_previous_secret_s_grace_ending_is_announced_an_hour_before(app, factory, world):
    slug, owner = world
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x",
                      event_types=["key.previous_secret_expiring"])
    key = _key(factory, slug, owner, EXPIRES)
    with freeze_time(T0), app.app_context():
        keys.rotate_secret(db.session, keys.get_key(db.session, key.client_id), Actor.cli(),
                           grace_period=86400)
        db.session.commit()
    grace_end = T0 + timedelta(days=1)
    assert _scan(app, grace_end - timedelta(hours=1) - US) == 0
    assert _scan(app, grace_end - timedelta(hours=1)) == 1
    assert _scan(app, grace_end - timedelta(minutes=1)) == 0
    [notice] = _notices(app, "key.previous_secret_expiring")
    assert notice == {"client_id": key.client_id, "name": "test key",
                      "previous_secret_expires_at": "2030-06-02T12:00:00Z"}


def test_token_reuse_is_reported_without_the_token(app, client, factory, world):
    slug, owner = world
    make_endpoint(app, slug, "http://127.0.0.1:9/x", event_types=["token.reuse_detected"])
    key = factory.key(slug, owner, scopes="read")
    first = mint(client, key)
    client.post("/oauth/rotate", data={"token": first}, auth=key.auth)
    reused = client.post("/oauth/rotate", data={"token": first}, auth=key.auth)
    assert reused.status_code == 400
    [notice] = _notices(app, "token.reuse_detected")
    assert notice["client_id"] == key.client_id and notice["lineage_revoked"] == 1
    assert notice["token_id"].startswith("tok_")
    assert first not in str(notice)


def _legacy_key(app, slug, last_used_at):
    from app.models import LegacyKey

    legacy_id = add_legacy_key(app, slug, f"legacy-static-key-{last_used_at:%j%H%M}")
    with app.app_context():
        db.session.get(LegacyKey, legacy_id).last_used_at = last_used_at
        db.session.commit()


def test_legacy_sunset_is_announced_to_workspaces_still_using_legacy_keys(app, factory, world):
    slug, _ = world
    idle = factory.workspace(owner=factory.user())
    with freeze_time(T0):
        make_endpoint(app, slug, "http://127.0.0.1:9/x",
                      event_types=["legacy.sunset_approaching"])
        make_endpoint(app, idle, "http://127.0.0.1:9/y",
                      event_types=["legacy.sunset_approaching"])
    sunset = T0 + timedelta(days=60)
    _legacy_key(app, slug, sunset - timedelta(days=2))  # still in use
    _legacy_key(app, idle, T0 - timedelta(days=90))  # not used lately: nobody to warn

    def scan(now):
        with freeze_time(now), app.app_context():
            queued = webhooks.scan_schedule(db.session, now, legacy_sunset=sunset)
            db.session.commit()
            return queued

    assert scan(sunset - timedelta(days=30) - US) == 0
    assert scan(sunset - timedelta(days=30)) == 1
    assert scan(sunset - timedelta(days=30)) == 0
    assert scan(sunset - timedelta(days=1)) == 1
    assert scan(sunset) == 0
    notices = _notices(app, "legacy.sunset_approaching")
    assert [(n["days"], n["legacy_keys_in_use"]) for n in notices] == [(30, 1), (1, 1)]
    assert notices[0]["sunset_at"] == "2030-07-31T12:00:00Z"
    assert {e.workspace_id for e in events(app)} == {workspace_id(app, slug)}
