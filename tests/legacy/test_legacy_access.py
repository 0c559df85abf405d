"""X-API-Key on GET /api/v1/me: accepted until the sunset, loudly; refused everywhere else."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from freezegun import freeze_time
from werkzeug.http import parse_date

from tests.support import (
    DEPRECATED_AT,
    SUNSET,
    add_legacy_key,
    flush,
    legacy_row,
    me,
    mint,
    set_disabled,
)

LEGACY = "old-static-key-0123456789abcdef"
GUIDE = "http://localhost/docs/legacy-migration"
BROWNOUT_START = SUNSET - timedelta(days=30)
BROWNOUT_END = BROWNOUT_START + timedelta(hours=1)


@pytest.fixture
def app_config(app_config):
    return {**app_config,  # tests/legacy/conftest.py's: counters flush only on demand
            "KEYMINT_LEGACY_BROWNOUTS":
                f"{BROWNOUT_START.isoformat()}/{BROWNOUT_END.isoformat()}"}


@pytest.fixture
def legacy(app, factory):
    slug = factory.workspace()
    return slug, add_legacy_key(app, slug, LEGACY)


def links(response) -> list[str]:
    return [part.strip() for value in response.headers.getlist("Link")
            for part in value.split(",")]


def assert_deprecation_headers(response) -> None:
    assert re.fullmatch(r"@\d+", response.headers["Deprecation"])
    assert int(response.headers["Deprecation"][1:]) == int(DEPRECATED_AT.timestamp())
    assert response.headers["Sunset"] == "Wed, 31 Dec 2025 23:59:59 GMT"
    assert parse_date(response.headers["Sunset"]) == SUNSET
    assert f'<{GUIDE}>; rel="deprecation"' in links(response)


def test_accepted_one_second_before_sunset_with_all_three_headers(client, legacy):
    slug, _ = legacy
    with freeze_time(SUNSET - timedelta(seconds=1)):
        response = me(client, LEGACY)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["credential"] == "legacy_api_key"
    assert body["workspace"]["slug"] == slug
    assert body["deprecated"] is True
    assert body["sunset_at"] == "2025-12-31T23:59:59Z"
    assert body["migration_guide"] == GUIDE
    assert_deprecation_headers(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_rejected_at_the_sunset_instant_naming_the_replacement(client, legacy):
    with freeze_time(SUNSET):
        response = me(client, LEGACY)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "legacy_key_sunset"
    assert "/oauth/token" in body["error_description"]
    assert GUIDE in body["error_description"]
    assert body["sunset_at"] == "2025-12-31T23:59:59Z"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_deprecation_headers(response)


def test_default_sunset_is_in_the_past_today(client, legacy):
    """Without freezing time: 2026-11-28 is after the default 2025-12-31T23:59:59Z."""
    assert me(client, LEGACY).get_json()["error"] == "legacy_key_sunset"


@pytest.mark.parametrize(("offset", "status"), [
    (-timedelta(seconds=1), 200),
    (timedelta(0), 401),
    (BROWNOUT_END - BROWNOUT_START - timedelta(seconds=1), 401),
    (BROWNOUT_END - BROWNOUT_START, 200),
])
def test_brownout_window_edges(client, legacy, offset, status):
    with freeze_time(BROWNOUT_START + offset):
        response = me(client, LEGACY)
    assert response.status_code == status
    assert_deprecation_headers(response)
    if status == 401:
        body = response.get_json()
        assert body["error"] == "legacy_key_sunset"
        assert "brownout" in body["error_description"]
        assert "/oauth/token" in body["error_description"]
        assert body["brownout_ends_at"] == BROWNOUT_END.isoformat().replace("+00:00", "Z")
        remaining = (BROWNOUT_END - (BROWNOUT_START + offset)).total_seconds()
        assert response.headers["Retry-After"] == str(int(remaining))


def test_sunset_moved_by_the_operator(app_config, database_url):
    from app import create_app

    app = create_app({**app_config, "KEYMINT_LEGACY_SUNSET": "2027-06-30T00:00:00Z"})
    with app.app_context():
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        user = accounts.create_user(db.session, "o@example.com", Actor.cli())
        accounts.create_workspace(db.session, "moved", user, Actor.cli())
        db.session.commit()
    add_legacy_key(app, "moved", LEGACY)
    response = me(app.test_client(), LEGACY)
    assert response.status_code == 200
    assert response.headers["Sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"
    app.extensions["keymint_legacy_usage"].discard()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_disabled_key_is_rejected_before_the_sunset(app, client, legacy):
    _, legacy_id = legacy
    set_disabled(app, legacy_id)
    with freeze_time(SUNSET - timedelta(days=1)):
        response = me(client, LEGACY)
    assert response.status_code == 401
    assert response.get_json()["error"] == "legacy_key_disabled"
    assert "/oauth/token" in response.get_json()["error_description"]


@pytest.mark.parametrize("value", ["not-a-key", "x" * 5000, " ", LEGACY[:-1]])
def test_unknown_key_is_401_not_500(client, legacy, value):
    with freeze_time(SUNSET - timedelta(days=1)):
        response = me(client, value)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"


def test_surrounding_whitespace_is_ignored(client, legacy):
    with freeze_time(SUNSET - timedelta(days=1)):
        assert me(client, f"  {LEGACY} ").status_code == 200


def test_bearer_keeps_working_and_wins_over_x_api_key(client, factory, legacy):
    slug, _ = legacy
    key = factory.key(slug)
    with freeze_time(SUNSET - timedelta(days=1)):
        token = mint(client, key)
        for headers in ({"Authorization": f"Bearer {token}"},
                        {"Authorization": f"Bearer {token}", "X-API-Key": LEGACY}):
            response = client.get("/api/v1/me", headers=headers)
            assert response.status_code == 200
            assert response.get_json()["credential"] == "access_token"
            assert "Deprecation" not in response.headers


def test_legacy_key_as_bearer_token_is_refused(client, legacy):
    with freeze_time(SUNSET - timedelta(days=1)):
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {LEGACY}"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/keys"),
    ("PATCH", "/api/v1/keys/key_AAAAAAAAAAAAAAAAAAAAAAAA"),
    ("DELETE", "/api/v1/keys/key_AAAAAAAAAAAAAAAAAAAAAAAA"),
    ("POST", "/api/v1/keys/key_AAAAAAAAAAAAAAAAAAAAAAAA/rotate"),
    ("DELETE", "/api/v1/keys/key_AAAAAAAAAAAAAAAAAAAAAAAA/tokens"),
    ("POST", "/api/v1/members"),
    ("PATCH", "/api/v1/workspace"),
    ("GET", "/api/v1/keys"),
    ("GET", "/api/v1/legacy-keys"),
    ("POST", "/api/v1/me"),
])
def test_legacy_key_never_reaches_other_routes(app, client, legacy, method, path):
    _, legacy_id = legacy
    with freeze_time(SUNSET - timedelta(days=1)):
        response = client.open(path, method=method, headers={"X-API-Key": LEGACY},
                               json={"name": "x", "scopes": ["keys:write"]})
    assert response.status_code == 401
    assert response.get_json()["error"] == "legacy_key_not_accepted"
    assert "/oauth/token" in response.get_json()["error_description"]
    assert_deprecation_headers(response)
    flush(app)
    assert legacy_row(app, legacy_id)["use_count"] == 0


def test_legacy_key_is_never_a_client_credential(client, factory, legacy):
    slug, _ = legacy
    key = factory.key(slug)
    grant = {"grant_type": "client_credentials"}
    with freeze_time(SUNSET - timedelta(days=1)):
        attempts = [
            client.post("/oauth/token", data=grant, headers={"X-API-Key": LEGACY}),
            client.post("/oauth/token", data=grant, auth=(key.client_id, LEGACY)),
            client.post("/oauth/token", data=grant, auth=(LEGACY, LEGACY)),
            client.post("/oauth/token", data={**grant, "client_id": key.client_id,
                                               "client_secret": LEGACY}),
            client.post("/oauth/token", data={**grant, "client_id": LEGACY}),
            client.post("/oauth/token", data=grant,
                        headers={"Authorization": f"Bearer {LEGACY}"}),
            client.post("/oauth/introspect", data={"token": LEGACY},
                        headers={"X-API-Key": LEGACY}),
        ]
    for response in attempts:
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["error"] == "invalid_client"
        assert "access_token" not in response.get_json()


def test_migrated_key_links_its_replacement(app, client, factory, legacy):
    slug, legacy_id = legacy
    from app.extensions import db
    from app.models import LegacyKey

    key = factory.key(slug)
    with app.app_context():
        db.session.get(LegacyKey, legacy_id).migrated_to = key.client_id
        db.session.commit()
    with freeze_time(SUNSET - timedelta(days=1)):
        response = me(client, LEGACY)
    assert response.status_code == 200
    assert response.get_json()["legacy_key"]["migrated_to"] == key.client_id
    assert (f'<http://localhost/api/v1/keys/{key.client_id}>; rel="successor-version"; '
            f'title="{key.client_id}"') in links(response)
    with freeze_time(SUNSET):
        rejected = me(client, LEGACY)
    assert rejected.get_json()["replacement_client_id"] == key.client_id
    assert key.client_id in rejected.get_json()["error_description"]


def test_migration_guide_is_served_and_configurable(app_config, client, legacy):
    guide = client.get("/docs/legacy-migration")
    assert guide.status_code == 200
    assert guide.mimetype == "text/markdown"
    assert "# Migrating from legacy API keys" in guide.get_data(as_text=True)

    from app import create_app

    other = create_app({**app_config,
                        "KEYMINT_LEGACY_MIGRATION_URL": "https://docs.example.com/migrate"})
    with freeze_time(SUNSET - timedelta(days=1)):
        response = me(other.test_client(), LEGACY)
    assert '<https://docs.example.com/migrate>; rel="deprecation"' in links(response)
    other.extensions["keymint_legacy_usage"].discard()
