"""`keymint signing-keys list | rotate | retire KID`: the timeline an operator sees, audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from freezegun import freeze_time

from app.config import Secret
from tests.support import SIGNING_KEK, all_rows, audit_events, jwt_config

T0 = "2030-01-01T00:00:00Z"


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)



def _json(result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _listed(cli) -> dict[str, dict[str, Any]]:
    return {k["kid"]: k for k in _json(cli("signing-keys", "list", "--json"))["signing_keys"]}


def test_rotate_now_makes_the_first_key_sign_at_once(cli, app):
    with freeze_time(T0):
        key = _json(cli("signing-keys", "rotate", "--now", "--json"))
        assert key["alg"] == "ES256"
        assert key["state"] == "active" and key["published"] is True
        assert key["activates_at"] == "2030-01-01T00:00:00Z"
        assert key["retires_at"] is None and key["published_until"] is None
    events = audit_events(app, "signing_key.created")
    assert [(e.target_type, e.target_id, e.actor_id) for e in events] == [
        ("signing_key", key["kid"], "cli")]
    assert events[0].details["at_once"] is True


def test_rotate_publishes_before_signing_and_keeps_the_old_key_published(cli, app):
    with freeze_time(T0):
        old = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
    with freeze_time("2030-01-01T01:00:00Z"):
        new = _json(cli("signing-keys", "rotate", "--json"))
        assert new["state"] == "pending" and new["published"] is True
        # One JWKS cache lifetime (300 s) before it signs; then the old key stops signing and
        # stays published for one JWT lifetime (KEYMINT_JWT_ACCESS_TOKEN_TTL, 300 s).
        assert new["activates_at"] == "2030-01-01T01:05:00Z"
        listed = _listed(cli)
        assert listed[old]["state"] == "active"
        assert listed[old]["retires_at"] == "2030-01-01T01:05:00Z"
        assert listed[old]["published_until"] == "2030-01-01T01:10:00Z"
    with freeze_time("2030-01-01T01:05:00Z"):
        listed = _listed(cli)
        assert (listed[old]["state"], listed[new["kid"]]["state"]) == ("retired", "active")
        assert listed[old]["published"] is True
    with freeze_time("2030-01-01T01:10:00Z"):
        assert _listed(cli)[old]["published"] is False
    retired = audit_events(app, "signing_key.retired")
    assert [(e.target_id, e.details["reason"]) for e in retired] == [(old, "rotated")]


def test_text_listing_names_every_key_and_never_a_private_part(cli, app):
    kid = _json(cli("signing-keys", "rotate", "--now", "--alg", "EdDSA", "--json"))["kid"]
    result = cli("signing-keys", "list")
    assert result.exit_code == 0
    assert kid in result.output and "EdDSA" in result.output and "active" in result.output
    row = all_rows(app, "signing_keys")[0]
    private_d = json.loads(row["public_jwk"])
    assert "d" not in private_d
    assert row["private_jwe"].count(".") == 4  # a compact JWE, not a JWK in the clear
    assert '"d"' not in row["private_jwe"] and '"d"' not in result.output


def test_retire_a_pending_key_unpublishes_it_at_once(cli, app):
    with freeze_time(T0):
        _json(cli("signing-keys", "rotate", "--now", "--json"))
        pending = _json(cli("signing-keys", "rotate", "--json"))["kid"]
        result = cli("signing-keys", "retire", pending)
        assert result.exit_code == 0, result.output
        assert _listed(cli)[pending]["published"] is False
    assert [e.target_id for e in audit_events(app, "signing_key.retired")][-1] == pending


def test_a_kid_that_begins_with_a_dash_is_a_kid_not_an_option(cli):
    # Thumbprints are base64url: one kid in 64 starts with "-".
    result = cli("signing-keys", "retire", "-Xno-such-kid")
    assert result.exit_code != 0
    assert "No such option" not in result.output
    assert "-Xno-such-kid" in result.output


def test_retire_refuses_the_key_signing_now(cli, app):
    kid = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
    result = cli("signing-keys", "retire", kid)
    assert result.exit_code == 1
    assert "is the one signing now" in result.output and "rotate" in result.output
    assert audit_events(app, "signing_key.retired") == []


def test_retire_an_unknown_or_retired_key_is_a_clear_error(cli):
    with freeze_time(T0):
        old = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
        _json(cli("signing-keys", "rotate", "--now", "--json"))
    with freeze_time("2030-01-01T00:00:01Z"):
        result = cli("signing-keys", "retire", old)
        assert result.exit_code == 1 and "already retired" in result.output
    result = cli("signing-keys", "retire", "nope")
    assert result.exit_code == 1 and "no signing key 'nope'" in result.output


def test_rotate_now_retires_the_old_key_at_once(cli, app):
    with freeze_time(T0):
        old = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
    with freeze_time("2030-01-01T00:00:30Z"):
        new = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
        listed = _listed(cli)
        assert (listed[old]["state"], listed[new]["state"]) == ("retired", "active")
        assert listed[old]["published_until"] == "2030-01-01T00:05:30Z"
    assert audit_events(app, "signing_key.retired")[0].details["reason"] == "rotated_now"


def test_rotate_without_the_encryption_key_is_refused(cli, app):
    app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = None
    result = cli("signing-keys", "rotate", "--now")
    assert result.exit_code == 1
    assert "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY is not set" in result.output
    assert all_rows(app, "signing_keys") == []
    app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = Secret(b"x" * 32)
    assert SIGNING_KEK not in result.output


def test_rotate_rejects_an_unknown_algorithm(cli):
    result = cli("signing-keys", "rotate", "--alg", "HS256")
    assert result.exit_code == 2 and "HS256" in result.output


def test_published_until_counts_one_jwt_lifetime(cli, app):
    app.config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] = 60
    with freeze_time(T0):
        old = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
        _json(cli("signing-keys", "rotate", "--json"))
        assert _listed(cli)[old]["published_until"] == "2030-01-01T00:06:00Z"


def test_retire_during_a_rotation_says_when_the_old_key_stops(cli):
    with freeze_time(T0):
        old = _json(cli("signing-keys", "rotate", "--now", "--json"))["kid"]
        _json(cli("signing-keys", "rotate", "--json"))
        result = cli("signing-keys", "retire", old)
    assert result.exit_code == 1
    assert "already stops signing at 2030-01-01T00:05:00+00:00" in result.output
