"""KEYMINT_LEGACY_* settings: brownout windows parsed at start-up, bad values fail loudly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.config import ConfigError, parse_brownouts


def test_brownouts_parse_sorted_and_converted_to_utc():
    windows = parse_brownouts(" 2025-12-02T14:00:00Z/2025-12-02T20:00:00Z ,"
                              "2025-11-04T15:00:00+01:00/2025-11-04T15:00:00Z")
    assert windows == [
        (datetime(2025, 11, 4, 14, tzinfo=UTC), datetime(2025, 11, 4, 15, tzinfo=UTC)),
        (datetime(2025, 12, 2, 14, tzinfo=UTC), datetime(2025, 12, 2, 20, tzinfo=UTC)),
    ]
    assert parse_brownouts("") == [] and parse_brownouts("  ") == []


@pytest.mark.parametrize("value", [
    "2025-11-04T14:00:00Z",                                   # no END
    "2025-11-04T14:00:00Z/2025-11-04T15:00:00",               # END without an offset
    "2025-11-04T15:00:00Z/2025-11-04T14:00:00Z",              # ends before it starts
    "2025-11-04T14:00:00Z/2025-11-04T14:00:00Z",              # empty window
    "2025-11-04T14:00:00Z/2025-11-04T15:00:00Z,",             # trailing comma
    "2025-11-04T14:00:00Z/2025-11-04T15:00:00Z/2025-11-05T00:00:00Z",
    "tomorrow/next week",
])
def test_bad_brownouts_stop_the_start_up(monkeypatch, value):
    from app import create_app

    monkeypatch.setenv("KEYMINT_LEGACY_BROWNOUTS", value)
    with pytest.raises(ConfigError, match="KEYMINT_LEGACY_BROWNOUTS"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.mark.parametrize(("name", "value"), [
    ("KEYMINT_LEGACY_SUNSET", "2025-12-31"),
    ("KEYMINT_LEGACY_SUNSET", "2025-12-31T23:59:59"),
    ("KEYMINT_LEGACY_DEPRECATED_AT", "2030-01-01T00:00:00Z"),  # after the sunset
    ("KEYMINT_LEGACY_MIGRATION_URL", "docs/migrating"),
    ("KEYMINT_LEGACY_FLUSH_INTERVAL", "0"),
    ("KEYMINT_LEGACY_FLUSH_THRESHOLD", "many"),
])
def test_other_bad_legacy_settings_fail_loudly(monkeypatch, name, value):
    from app import create_app

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_defaults():
    from app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["KEYMINT_LEGACY_SUNSET"] == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert app.config["KEYMINT_LEGACY_BROWNOUTS"] == []
    assert app.config["KEYMINT_LEGACY_MIGRATION_URL"] is None
