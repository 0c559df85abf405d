"""POST /oauth/introspect with a legacy key: active for its own workspace until the sunset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from tests.support import (
    SUNSET,
    add_legacy_key,
    flush,
    legacy_row,
    set_disabled,
)

LEGACY = "introspected-legacy-key"
BROWNOUT = SUNSET - timedelta(days=7)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "KEYMINT_LEGACY_BROWNOUTS":
            f"{BROWNOUT.isoformat()}/{(BROWNOUT + timedelta(minutes=30)).isoformat()}"}


@pytest.fixture
def own(app, factory):
    slug = factory.workspace()
    legacy_id = add_legacy_key(app, slug, LEGACY)
    return factory.key(slug, scopes="introspect"), legacy_id


def introspect(client, key, token=LEGACY):
    return client.post("/oauth/introspect", data={"token": token}, auth=key.auth)


def test_own_workspace_before_sunset_is_active_and_deprecated(app, client, own):
    key, legacy_id = own
    with app.app_context():
        from app.extensions import db
        from app.models import LegacyKey

        workspace_id = db.session.get(LegacyKey, legacy_id).workspace_id
    with freeze_time(SUNSET - timedelta(seconds=1)):
        response = introspect(client, key)
    assert response.status_code == 200
    assert response.get_json() == {
        "active": True, "token_type": "legacy_api_key", "workspace_id": str(workspace_id),
        "deprecated": True, "sunset_at": "2025-12-31T23:59:59Z",
        "exp": int(SUNSET.timestamp()), "iss": "http://localhost"}
    assert response.headers["Deprecation"].startswith("@")
    assert response.headers["Sunset"] == "Wed, 31 Dec 2025 23:59:59 GMT"
    assert 'rel="deprecation"' in response.headers["Link"]
    assert response.headers["Cache-Control"] == "no-store"
    flush(app)
    assert legacy_row(app, legacy_id)["use_count"] == 1


def test_other_workspace_is_exactly_inactive_and_uncounted(app, client, factory, own):
    _, legacy_id = own
    stranger = factory.key(scopes="introspect")  # a key in another workspace
    with freeze_time(SUNSET - timedelta(days=1)):
        response = introspect(client, stranger)
    assert response.get_json() == {"active": False}
    assert "Deprecation" not in response.headers
    flush(app)
    assert legacy_row(app, legacy_id)["use_count"] == 0
    assert legacy_row(app, legacy_id)["rejected_count"] == 0


@pytest.mark.parametrize("moment", [SUNSET, SUNSET + timedelta(days=300), BROWNOUT,
                                    BROWNOUT + timedelta(minutes=29, seconds=59)])
def test_inactive_at_sunset_and_in_brownouts(app, client, own, moment):
    key, legacy_id = own
    with freeze_time(moment):
        response = introspect(client, key)
    assert response.get_json() == {"active": False}
    flush(app)
    assert legacy_row(app, legacy_id)["rejected_count"] == 1


def test_brownout_end_and_disabled(app, client, own):
    key, legacy_id = own
    with freeze_time(BROWNOUT + timedelta(minutes=30)):
        assert introspect(client, key).get_json()["active"] is True
        set_disabled(app, legacy_id)
        assert introspect(client, key).get_json() == {"active": False}


@pytest.mark.parametrize("token", ["", "garbage", LEGACY + "x", "x" * 4000])
def test_unknown_values_are_inactive(client, own, token):
    key, _ = own
    with freeze_time(SUNSET - timedelta(days=1)):
        response = introspect(client, key, token)
    if token == "":
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_request"
    else:
        assert response.get_json() == {"active": False}
