"""Key rules at their exact time boundaries: expiry, secret grace periods, owners and members."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app import credentials
from app.extensions import db
from app.services import accounts, keys
from app.services.audit import Actor
from tests.support import all_rows, introspect, mint, token_response

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _rotate(app, client_id, grace):
    with app.app_context():
        rotated = keys.rotate_secret(db.session, keys.get_key(db.session, client_id), Actor.cli(),
                                     grace)
        db.session.commit()
        return rotated.client_secret, rotated.previous_expires_at


def test_key_valid_one_second_before_expiry_and_invalid_at_it(client, factory):
    with freeze_time(T0) as frozen:
        key = factory.key(expires_at=T0 + timedelta(days=1))
        frozen.move_to(T0 + timedelta(days=1) - timedelta(seconds=1))
        response = token_response(client, key)
        assert response.status_code == 200
        # the token is capped at the key's expiry: one second left
        assert response.get_json()["expires_in"] == 1
        token = response.get_json()["access_token"]
        assert introspect(client, key, token)["active"] is True
        frozen.move_to(T0 + timedelta(days=1))
        response = token_response(client, key)
        assert response.status_code == 401
        assert response.get_json()["error"] == "invalid_client"


def test_token_issued_before_key_expiry_is_inactive_at_it(client, factory):
    with freeze_time(T0) as frozen:
        caller = factory.key()
        key = factory.key(caller.workspace, expires_at=T0 + timedelta(minutes=10))
        token = mint(client, key)
        frozen.move_to(T0 + timedelta(minutes=9, seconds=59))
        assert introspect(client, caller, token)["active"] is True
        frozen.move_to(T0 + timedelta(minutes=10))
        assert introspect(client, caller, token) == {"active": False}


def test_previous_secret_works_until_the_grace_period_ends_exactly(app, client, factory):
    with freeze_time(T0) as frozen:
        key = factory.key()
        new_secret, previous_end = _rotate(app, key.client_id, 3600)
        assert previous_end == T0 + timedelta(seconds=3600)
        frozen.move_to(T0 + timedelta(seconds=3599))
        assert token_response(client, key).status_code == 200
        assert token_response(client, (key.client_id, new_secret)).status_code == 200
        frozen.move_to(T0 + timedelta(seconds=3600))
        assert token_response(client, key).status_code == 401
        assert token_response(client, (key.client_id, new_secret)).status_code == 200


def test_zero_grace_ends_the_old_secret_and_its_tokens_now(app, client, factory):
    with freeze_time(T0):
        key = factory.key()
        token = mint(client, key)
        new_secret, previous_end = _rotate(app, key.client_id, 0)
        assert previous_end is None
        assert token_response(client, key).status_code == 401
        caller = (key.client_id, new_secret)
        assert introspect(client, caller, token) == {"active": False}


def test_tokens_never_outlive_the_secret_that_minted_them(app, client, factory):
    with freeze_time(T0) as frozen:
        key = factory.key()
        token = mint(client, key)  # 900 s TTL
        new_secret, _ = _rotate(app, key.client_id, 60)
        caller = (key.client_id, new_secret)
        frozen.move_to(T0 + timedelta(seconds=59))
        assert introspect(client, caller, token)["active"] is True
        frozen.move_to(T0 + timedelta(seconds=60))
        assert introspect(client, caller, token) == {"active": False}


def test_rotation_during_grace_ends_the_older_secret_now(app, client, factory):
    with freeze_time(T0) as frozen:
        key = factory.key()
        second, _ = _rotate(app, key.client_id, 3600)
        frozen.move_to(T0 + timedelta(seconds=10))
        third, _ = _rotate(app, key.client_id, 3600)
        assert token_response(client, key).status_code == 401  # the first: ended now
        for secret in (second, third):
            assert token_response(client, (key.client_id, secret)).status_code == 200
        with app.app_context():
            live = keys.load_credential(db.session, key.client_id,
                                        T0 + timedelta(seconds=10)).secrets
            assert len(live) == 2
            assert sum(1 for s in live if s.expires_at is None) == 1


def test_grace_never_extends_past_key_expiry(app, factory):
    with freeze_time(T0):
        key = factory.key(expires_at=T0 + timedelta(minutes=5))
        _, previous_end = _rotate(app, key.client_id, 86400)
        assert previous_end == T0 + timedelta(minutes=5)


@pytest.mark.parametrize("grace", [-1, 604801])
def test_grace_period_out_of_range_is_rejected(app, factory, grace):
    key = factory.key()
    with app.app_context(), pytest.raises(keys.InvalidInput, match="grace_period"):
        keys.rotate_secret(db.session, keys.get_key(db.session, key.client_id), Actor.cli(), grace)


def test_disabled_user_keys_and_tokens_stop_at_once(app, client, factory):
    caller = factory.key()
    key = factory.key(caller.workspace)
    token = mint(client, key)
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, key.email),
                              Actor.cli())
        db.session.commit()
    assert token_response(client, key).status_code == 401
    assert introspect(client, caller, token) == {"active": False}
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_removed_member_keys_and_tokens_stop_at_once(app, client, factory):
    caller = factory.key()
    key = factory.key(caller.workspace)
    token = mint(client, key)
    with app.app_context():
        ws = accounts.get_workspace(db.session, key.workspace)
        user = accounts.get_user_by_email(db.session, key.email)
        revoked = accounts.remove_member(db.session, accounts.get_membership(db.session, ws, user),
                                         Actor.cli())
        db.session.commit()
    assert revoked == 1
    assert token_response(client, key).status_code == 401
    assert introspect(client, caller, token) == {"active": False}


def test_revoked_key_cascades_to_secrets_and_tokens(app, client, factory):
    caller = factory.key()
    key = factory.key(caller.workspace)
    token = mint(client, key)
    with app.app_context():
        keys.revoke_key(db.session, keys.get_key(db.session, key.client_id), Actor.cli())
        db.session.commit()
    assert token_response(client, key).status_code == 401
    assert introspect(client, caller, token) == {"active": False}
    with app.app_context():
        revoked = keys.get_key(db.session, key.client_id)
        assert revoked.revoked_at is not None
        assert all(s.revoked_at is not None for s in revoked.secrets)
        key_id = revoked.id
    tokens = [t for t in all_rows(app, "access_tokens") if t["key_id"] == key_id]
    assert tokens and all(t["revoked_at"] is not None for t in tokens)


def test_secrets_and_tokens_are_stored_only_as_digests(app, client, factory):
    key = factory.key()
    token = mint(client, key)
    for table, value in (("key_secrets", key.secret), ("access_tokens", token)):
        rows = all_rows(app, table)
        dumped = repr(rows)
        assert value not in dumped
        assert value[8:30] not in dumped
        assert credentials.digest(value) in {r["digest"] for r in rows}
