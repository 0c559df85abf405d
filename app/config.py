"""Configuration: defaults, overridden by KEYMINT_* environment variables."""

from __future__ import annotations

import os
from typing import Any

from app.clock import parse_rfc3339

DEFAULT_LEGACY_SUNSET = "2025-12-31T23:59:59Z"
DEFAULT_LEGACY_DEPRECATED_AT = "2025-01-01T00:00:00Z"


class ConfigError(ValueError):
    """A KEYMINT_* setting has a value keymint cannot use."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _time(name: str, default: str) -> Any:
    raw = os.environ.get(name) or default
    try:
        return parse_rfc3339(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def load_from_environment() -> dict[str, Any]:
    """Read every KEYMINT_* setting; unknown values fail loudly at start-up."""
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get("KEYMINT_DATABASE_URL") or None,
        "KEYMINT_ISSUER": os.environ.get("KEYMINT_ISSUER") or None,
        "KEYMINT_ACCESS_TOKEN_TTL": _int("KEYMINT_ACCESS_TOKEN_TTL", 900, minimum=1),
        "KEYMINT_MAX_ACCESS_TOKEN_TTL": _int("KEYMINT_MAX_ACCESS_TOKEN_TTL", 86400, minimum=1),
        "KEYMINT_LEGACY_SUNSET": _time("KEYMINT_LEGACY_SUNSET", DEFAULT_LEGACY_SUNSET),
        "KEYMINT_LEGACY_DEPRECATED_AT": _time(
            "KEYMINT_LEGACY_DEPRECATED_AT", DEFAULT_LEGACY_DEPRECATED_AT
        ),
        "KEYMINT_LEGACY_MIGRATION_URL": os.environ.get("KEYMINT_LEGACY_MIGRATION_URL") or None,
        "KEYMINT_LEGACY_BROWNOUTS": os.environ.get("KEYMINT_LEGACY_BROWNOUTS", ""),
        "KEYMINT_RATELIMIT_STORAGE_URL": os.environ.get(
            "KEYMINT_RATELIMIT_STORAGE_URL", "memory://"
        ),
        "KEYMINT_RATELIMIT_ENABLED": _bool("KEYMINT_RATELIMIT_ENABLED", True),
        "KEYMINT_TRUSTED_PROXIES": _int("KEYMINT_TRUSTED_PROXIES", 0),
        "KEYMINT_LAST_USED_INTERVAL": _int("KEYMINT_LAST_USED_INTERVAL", 60),
        "KEYMINT_TOKEN_RETENTION_DAYS": _int("KEYMINT_TOKEN_RETENTION_DAYS", 7),
        # Only for the benchmark's baseline run: false writes no audit events at all.
        "KEYMINT_AUDIT_ENABLED": _bool("KEYMINT_AUDIT_ENABLED", True),
        # Mirror each committed audit event as one JSON line to the `keymint.audit` logger.
        "KEYMINT_AUDIT_LOG": _bool("KEYMINT_AUDIT_LOG", False),
    }


def build_config(overrides: dict[str, Any] | None, instance_path: str) -> dict[str, Any]:
    config = load_from_environment()
    config.update(
        {
            "SQLALCHEMY_TRACK_MODIFICATIONS": False,
            "MAX_CONTENT_LENGTH": 64 * 1024,
            "MAX_FORM_PARTS": 100,
            "JSON_SORT_KEYS": False,
        }
    )
    if overrides:
        config.update(overrides)
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(instance_path, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(
            instance_path, "keymint.sqlite3"
        )
    return config
