"""The migration guide at <issuer>/docs/legacy-migration: this server's dates and addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from tests.support import SUNSET

START = SUNSET - timedelta(days=30)
END = START + timedelta(hours=2)


def guide(app) -> str:
    response = app.test_client().get("/docs/legacy-migration")
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    return response.get_data(as_text=True)


def test_the_defaults_are_filled_in_and_no_placeholder_is_left(app):
    with freeze_time(SUNSET - timedelta(days=60)):
        text = guide(app)
    assert "# Migrating from legacy API keys" in text
    assert "**sunset: 2025-12-31T23:59:59Z**" in text
    assert "Sunset: Wed, 31 Dec 2025 23:59:59 GMT" in text
    assert "Deprecation: @1735689600" in text
    assert "http://localhost/oauth/token" in text  # no issuer configured: the request's URL
    assert "<http://localhost/docs/legacy-migration>; rel=\"deprecation\"" in text
    assert "Brownouts: none scheduled now" in text
    assert "{{" not in text and "}}" not in text


def test_the_configured_issuer_sunset_and_brownouts_are_shown(database_url, app_factory):
    app, _ = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.org",
                         KEYMINT_LEGACY_SUNSET="2026-06-30T12:00:00Z",
                         KEYMINT_LEGACY_DEPRECATED_AT="2026-01-15T00:00:00Z",
                         KEYMINT_LEGACY_BROWNOUTS="2026-05-05T14:00:00Z/2026-05-05T15:00:00Z")
    with freeze_time(datetime(2026, 2, 1, tzinfo=UTC)):
        text = guide(app)
    assert "**sunset: 2026-06-30T12:00:00Z**" in text
    assert "Sunset: Tue, 30 Jun 2026 12:00:00 GMT" in text
    assert "Announced: 2026-01-15T00:00:00Z" in text
    assert "curl" in text and "https://auth.example.org/oauth/token" in text
    assert "<https://auth.example.org/docs/legacy-migration>; rel=\"deprecation\"" in text
    assert "Brownouts: 2026-05-05T14:00:00Z until 2026-05-05T15:00:00Z" in text
    assert "2025-12-31" not in text and "keymint.example.com" not in text
    assert "http://localhost" not in text


def test_a_configured_guide_url_is_the_one_named(database_url, app_factory):
    app, _ = app_factory(database_url, KEYMINT_LEGACY_MIGRATION_URL="https://docs.example.com/m")
    assert "<https://docs.example.com/m>; rel=\"deprecation\"" in guide(app)


def test_a_brownout_is_listed_until_it_ends(database_url, app_factory):
    window = f"{START.isoformat()}/{END.isoformat()}"
    app, _ = app_factory(database_url, KEYMINT_LEGACY_BROWNOUTS=window)
    listed = "Brownouts: 2025-12-01T23:59:59Z until 2025-12-02T01:59:59Z"
    with freeze_time(END - timedelta(seconds=1)):
        assert listed in guide(app)
    with freeze_time(END):
        assert "Brownouts: none scheduled now" in guide(app)


def test_a_stored_brownout_is_listed(app):
    from app.extensions import db
    from app.services import legacy
    from app.services.audit import Actor

    with freeze_time(START - timedelta(days=1)):
        with app.app_context():
            legacy.add_brownout(db.session, START, END, Actor.cli())
            db.session.commit()
        text = guide(app)
    assert "Brownouts: 2025-12-01T23:59:59Z until 2025-12-02T01:59:59Z" in text


def test_it_speaks_to_integrators_not_operators(app):
    text = guide(app)
    assert "keymint legacy" not in text and "keymint keys" not in text
    assert "KEYMINT_" not in text  # settings are the operator's (docs/legacy.md)
    assert "GET http://localhost/api/v1/legacy-keys" in text
