"""Key creation rules: scopes, names, expiry within policy, never a partial write."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.services import accounts, keys
from app.services.audit import Actor
from app.services.errors import InvalidInput
from tests.support import all_rows, mint

T0 = datetime(2030, 6, 1, tzinfo=UTC)


def _create(app, slug, email, **kwargs):
    with app.app_context():
        ws = accounts.get_workspace(db.session, slug)
        user = accounts.get_user_by_email(db.session, email)
        kwargs.setdefault("name", "k")
        kwargs.setdefault("scopes", "read")
        try:
            created = keys.create_key(db.session, ws, user, Actor.cli(), **kwargs)
            db.session.commit()
            return created.key.expires_at
        finally:
            db.session.rollback()


@pytest.fixture
def owner_ws(factory):
    email = factory.user()
    return factory.workspace(owner=email), email


@pytest.mark.parametrize("scopes", ['quote"d', "back\\slash", "tab\tbed", "é", "x" * 65])
def test_scope_tokens_outside_rfc6749_are_refused(app, owner_ws, scopes):
    with pytest.raises(InvalidInput, match="invalid scope"):
        _create(app, *owner_ws, scopes=[scopes])
    assert all_rows(app, "api_keys") == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "bell\x07"])
def test_bad_names_are_refused(app, owner_ws, name):
    with pytest.raises(InvalidInput, match="name"):
        _create(app, *owner_ws, name=name)


def test_expiry_in_the_past_or_now_is_refused(app, owner_ws):
    with freeze_time(T0):
        with pytest.raises(InvalidInput, match="future"):
            _create(app, *owner_ws, expires_at=T0)
        assert _create(app, *owner_ws, expires_at=T0 + timedelta(seconds=1)) == T0 + timedelta(
            seconds=1)


def test_expiry_beyond_workspace_policy_is_refused_at_the_exact_limit(app, factory):
    email = factory.user()
    slug = factory.workspace(owner=email, max_key_lifetime_days=30)
    with freeze_time(T0):
        assert _create(app, slug, email, expires_at=T0 + timedelta(days=30)) == T0 + timedelta(
            days=30)
        with pytest.raises(InvalidInput, match="maximum key lifetime"):
            _create(app, slug, email, expires_at=T0 + timedelta(days=30, seconds=1))
        # a policy without an explicit expiry gives the default: the maximum
        assert _create(app, slug, email) == T0 + timedelta(days=30)


def test_expires_at_and_expires_in_days_are_exclusive(app, owner_ws):
    with pytest.raises(InvalidInput, match="not both"):
        _create(app, *owner_ws, expires_at=datetime(2099, 1, 1, tzinfo=UTC), expires_in_days=3)


def test_non_member_cannot_own_a_key(app, factory, owner_ws):
    outsider = factory.user()
    with pytest.raises(InvalidInput, match="not a member"):
        _create(app, owner_ws[0], outsider)


def test_scopes_can_be_narrowed_but_never_widened(app, client, factory):
    key = factory.key(scopes="introspect keys:read keys:write")
    token = mint(client, key)
    with app.app_context():
        ws = accounts.get_workspace(db.session, key.workspace)
        api_key = keys.get_key(db.session, key.client_id)
        with pytest.raises(InvalidInput, match="only be narrowed"):
            keys.update_key(db.session, api_key, ws, Actor.cli(), scopes="introspect admin")
        db.session.rollback()
        api_key = keys.get_key(db.session, key.client_id)
        keys.update_key(db.session, api_key, ws, Actor.cli(), scopes="introspect keys:read")
        db.session.commit()
    # a token holding a scope the key lost no longer works
    response = client.post("/oauth/introspect", data={"token": token}, auth=key.auth)
    assert response.get_json() == {"active": False}
