"""Configuration: defaults, overridden by KEYMINT_* environment variables."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.clock import isoformat, parse_rfc3339

DEFAULT_LEGACY_SUNSET = "2025-12-31T23:59:59Z"
DEFAULT_LEGACY_DEPRECATED_AT = "2025-01-01T00:00:00Z"


class ConfigError(ValueError):
    """A KEYMINT_* setting has a value keymint cannot use."""


class Secret:
    """A secret setting: its repr and str are masked, so printing the config never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self._value == other._value

    __hash__ = None  # type: ignore[assignment]


AUDIT_HMAC_KEY_MIN_BYTES = 32
SIGNING_KEY_ENCRYPTION_KEY_BYTES = 32  # an AES-256-GCM key
METRICS_TOKEN_MIN_CHARS = 32
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# RFC 6750 b64token: what an `Authorization: Bearer` header can carry.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
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


INSTANT_FORM = "an RFC 3339 instant with an offset, e.g. 2030-01-01T00:00:00Z"


def _instant(name: str, raw: str) -> datetime:
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {INSTANT_FORM}, got {raw!r}") from None


def _time(name: str, default: str) -> Any:
    return _instant(name, os.environ.get(name) or default)


def _limit(name: str, default: str) -> str:
    """A rate-limit string such as "120 per minute" or "10/minute;100/hour"."""
    from limits import parse_many

    raw = os.environ.get(name) or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a rate limit like '120 per minute', got {raw!r}") \
            from None
    return raw


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (os.environ.get(name) or default).lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


ISSUER_FORM = ("an absolute https URL without query or fragment, e.g. "
               "https://auth.example.com (http only on a loopback host: 127.0.0.0/8, ::1, "
               "localhost)")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets allowed): where plain HTTP stays on the machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _issuer_problem(value: str) -> str | None:
    if not _PRINTABLE_ASCII.fullmatch(value):
        return "must be printable ASCII without spaces"
    if "?" in value or "#" in value:
        return "must have no query or fragment"
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return "must be an absolute http(s) URL"
    if "@" in parts.netloc:
        return "must not hold credentials"
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "has no host"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "may use http only on a loopback host"
    return None


def normalise_issuer(value: str | None) -> str | None:
    """KEYMINT_ISSUER checked (RFC 8414 §2: https, no query, no fragment) and without a
    trailing slash, so `<issuer>/oauth/token` never holds `//`; None when unset."""
    if value is None or value == "":
        return None
    problem = _issuer_problem(value) if isinstance(value, str) else "must be a string"
    if problem is not None:
        # Never repeat a value that may hold credentials: this message ends up in logs.
        shown = "" if "@" in str(value) else f", got {value!r}"
        raise ConfigError(f"KEYMINT_ISSUER {problem}{shown}; expected {ISSUER_FORM}")
    return value.rstrip("/")


def parse_brownouts(text: str, setting: str = "KEYMINT_LEGACY_BROWNOUTS"
                    ) -> list[tuple[datetime, datetime]]:
    """Parse brownout windows: comma-separated `START/END` RFC 3339 instants, half-open.

    Example: `2025-11-04T14:00:00Z/2025-11-04T15:00:00Z,2025-12-02T14:00:00Z/2025-12-02T20:00:00Z`.
    Every instant needs an explicit offset (Z recommended); START must be before END.
    Windows come back sorted by start. An empty value means no brownouts.
    """
    windows: list[tuple[datetime, datetime]] = []
    text = (text or "").strip()
    if not text:
        return windows
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        start_text, sep, end_text = item.partition("/")
        if not item or not sep or "/" in end_text:
            raise ConfigError(
                f"{setting}: window {position} ({item!r}) is not START/END, e.g. "
                "2025-11-04T14:00:00Z/2025-11-04T15:00:00Z")
        try:
            start, end = parse_rfc3339(start_text), parse_rfc3339(end_text)
        except ValueError as exc:
            raise ConfigError(f"{setting}: window {position}: {exc}") from None
        if not start < end:
            raise ConfigError(f"{setting}: window {position} ({item!r}) must end after it starts")
        windows.append((start, end))
    return sorted(windows)


def _legacy_settings(config: dict[str, Any]) -> None:
    """Normalise legacy settings given as strings (environment or overrides) to datetimes."""
    for name in ("KEYMINT_LEGACY_SUNSET", "KEYMINT_LEGACY_DEPRECATED_AT"):
        value = config.get(name)
        if isinstance(value, str):
            config[name] = _instant(name, value)
        elif not isinstance(value, datetime) or value.tzinfo is None:
            raise ConfigError(f"{name} must be {INSTANT_FORM}")
    if config["KEYMINT_LEGACY_DEPRECATED_AT"] > config["KEYMINT_LEGACY_SUNSET"]:
        raise ConfigError("KEYMINT_LEGACY_DEPRECATED_AT must not be after KEYMINT_LEGACY_SUNSET")
    brownouts = config.get("KEYMINT_LEGACY_BROWNOUTS") or ""
    if isinstance(brownouts, str):
        config["KEYMINT_LEGACY_BROWNOUTS"] = parse_brownouts(brownouts)
    else:
        for start, end in brownouts:
            if start.tzinfo is None or end.tzinfo is None or not start < end:
                raise ConfigError("KEYMINT_LEGACY_BROWNOUTS: each window needs aware "
                                  "datetimes with start < end")
        config["KEYMINT_LEGACY_BROWNOUTS"] = sorted(brownouts)
    url = config.get("KEYMINT_LEGACY_MIGRATION_URL")
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(f"KEYMINT_LEGACY_MIGRATION_URL must be an absolute http(s) URL, "
                          f"got {url!r}")


def _audit_hmac_key(value: Any) -> Secret | None:
    """KEYMINT_AUDIT_HMAC_KEY: at least 32 random bytes, URL-safe base64 (padding optional).

    Error messages give the length, never the value.
    """
    if value is None or isinstance(value, Secret) or value == "":
        return value or None
    text = str(value).strip()
    problem = (f"KEYMINT_AUDIT_HMAC_KEY must be at least {AUDIT_HMAC_KEY_MIN_BYTES} random "
               "bytes in URL-safe base64, e.g. the output of `python -c \"import secrets; "
               "print(secrets.token_urlsafe(32))\"`")
    if not _URLSAFE_B64.fullmatch(text):
        raise ConfigError(f"{problem}; the value set ({len(text)} characters) is not URL-safe "
                          "base64")
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{problem}; the value set ({len(text)} characters) is not URL-safe "
                          "base64") from None
    if len(key) < AUDIT_HMAC_KEY_MIN_BYTES:
        raise ConfigError(f"{problem}; the value set decodes to only {len(key)} bytes")
    return Secret(key)


def _urlsafe_b64_bytes(text: str) -> bytes | None:
    """The bytes of URL-safe base64 `text` (padding optional), or None if it is not that."""
    if not _URLSAFE_B64.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _signing_key_encryption_key(value: Any) -> Secret | None:
    """KEYMINT_SIGNING_KEY_ENCRYPTION_KEY: exactly 32 random bytes, URL-safe base64.

    It encrypts the private parts of the JWT signing keys in the database (AES-256-GCM).
    Error messages give the length, never the value.
    """
    if value is None or isinstance(value, Secret) or value == "":
        return value or None
    text = str(value).strip()
    problem = (f"KEYMINT_SIGNING_KEY_ENCRYPTION_KEY must be {SIGNING_KEY_ENCRYPTION_KEY_BYTES} "
               "random bytes in URL-safe base64, e.g. the output of `python -c \"import "
               "secrets; print(secrets.token_urlsafe(32))\"`")
    key = _urlsafe_b64_bytes(text)
    if key is None:
        raise ConfigError(f"{problem}; the value set ({len(text)} characters) is not URL-safe "
                          "base64")
    if len(key) != SIGNING_KEY_ENCRYPTION_KEY_BYTES:
        raise ConfigError(f"{problem}; the value set decodes to {len(key)} bytes")
    return Secret(key)


def _metrics_token(value: Any) -> Secret | None:
    """KEYMINT_METRICS_TOKEN: a bearer token of at least 32 characters (RFC 6750 b64token)."""
    if value is None or isinstance(value, Secret) or value == "":
        return value or None
    text = str(value).strip()
    if len(text) < METRICS_TOKEN_MIN_CHARS or not _B64TOKEN.fullmatch(text):
        raise ConfigError(f"KEYMINT_METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_CHARS} "
                          "characters of A-Z a-z 0-9 - . _ ~ + / (e.g. the output of `python "
                          "-c \"import secrets; print(secrets.token_urlsafe(32))\"`); the value "
                          f"set has {len(text)} characters")
    return Secret(text.encode("ascii"))


SECRET_KEY_MIN_BYTES = 32


def _secret_key(value: Any) -> Secret | None:
    """KEYMINT_SECRET_KEY: at least 32 random bytes, URL-safe base64 (padding optional).

    It signs the console's CSRF tokens and its sign-in flow state (Flask's SECRET_KEY).
    Error messages give the length, never the value.
    """
    if value is None or isinstance(value, Secret) or value == "":
        return value or None
    text = str(value).strip()
    problem = (f"KEYMINT_SECRET_KEY must be at least {SECRET_KEY_MIN_BYTES} random bytes in "
               "URL-safe base64, e.g. the output of `python -c \"import secrets; "
               "print(secrets.token_urlsafe(32))\"`")
    key = _urlsafe_b64_bytes(text)
    if key is None:
        raise ConfigError(f"{problem}; the value set ({len(text)} characters) is not URL-safe "
                          "base64")
    if len(key) < SECRET_KEY_MIN_BYTES:
        raise ConfigError(f"{problem}; the value set decodes to only {len(key)} bytes")
    return Secret(key)


def is_development(config: Mapping[str, Any]) -> bool:
    """Tests (TESTING) or plain-HTTP development (AUTHLIB_INSECURE_TRANSPORT=1, as the
    quickstart sets for its loopback server): where a missing KEYMINT_SECRET_KEY may be
    replaced by a random per-process one."""
    insecure = os.environ.get("AUTHLIB_INSECURE_TRANSPORT", "").lower() in {"1", "true"}
    return bool(config.get("TESTING")) or insecure


def _flask_secret_key(config: dict[str, Any]) -> None:
    """Flask's SECRET_KEY from KEYMINT_SECRET_KEY. Without one: a random per-process key in
    development and tests (console sign-ins then last one process lifetime, and a
    multi-worker server needs a shared key: the quickstart writes one to the instance
    folder); elsewhere none, and the console answers 503 until it is set (the API does not
    need it)."""
    key = config["KEYMINT_SECRET_KEY"]
    if key is not None:
        config["SECRET_KEY"] = key.reveal()
        config["CONSOLE_EPHEMERAL_SECRET_KEY"] = False
    elif is_development(config) and not config.get("SECRET_KEY"):
        import secrets

        config["SECRET_KEY"] = secrets.token_bytes(SECRET_KEY_MIN_BYTES)
        config["CONSOLE_EPHEMERAL_SECRET_KEY"] = True
    else:
        config.setdefault("SECRET_KEY", None)
        config["CONSOLE_EPHEMERAL_SECRET_KEY"] = False


def _secret_settings(config: dict[str, Any]) -> None:
    """Validate secret settings given as strings (environment or overrides); mask them."""
    config["KEYMINT_AUDIT_HMAC_KEY"] = _audit_hmac_key(config.get("KEYMINT_AUDIT_HMAC_KEY"))
    config["KEYMINT_METRICS_TOKEN"] = _metrics_token(config.get("KEYMINT_METRICS_TOKEN"))
    config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = _signing_key_encryption_key(
        config.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"))
    config["KEYMINT_SECRET_KEY"] = _secret_key(config.get("KEYMINT_SECRET_KEY"))
    _flask_secret_key(config)


def load_from_environment() -> dict[str, Any]:
    """Read every KEYMINT_* setting; unknown values fail loudly at start-up."""
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get("KEYMINT_DATABASE_URL") or None,
        "KEYMINT_ISSUER": normalise_issuer(os.environ.get("KEYMINT_ISSUER")),
        "KEYMINT_ACCESS_TOKEN_TTL": _int("KEYMINT_ACCESS_TOKEN_TTL", 900, minimum=1),
        "KEYMINT_MAX_ACCESS_TOKEN_TTL": _int("KEYMINT_MAX_ACCESS_TOKEN_TTL", 86400, minimum=1),
        # JWT access tokens stay valid at resource servers that validate them locally even
        # when revoked, so they live shorter than opaque ones (docs/jwt.md).
        "KEYMINT_JWT_ACCESS_TOKEN_TTL": _int("KEYMINT_JWT_ACCESS_TOKEN_TTL", 300, minimum=1),
        "KEYMINT_LEGACY_SUNSET": _time("KEYMINT_LEGACY_SUNSET", DEFAULT_LEGACY_SUNSET),
        "KEYMINT_LEGACY_DEPRECATED_AT": _time(
            "KEYMINT_LEGACY_DEPRECATED_AT", DEFAULT_LEGACY_DEPRECATED_AT
        ),
        "KEYMINT_LEGACY_MIGRATION_URL": os.environ.get("KEYMINT_LEGACY_MIGRATION_URL") or None,
        "KEYMINT_LEGACY_BROWNOUTS": parse_brownouts(
            os.environ.get("KEYMINT_LEGACY_BROWNOUTS", "")),
        # Legacy usage counters are buffered in-process and written at most every
        # FLUSH_INTERVAL seconds, or as soon as FLUSH_THRESHOLD uses are pending, and at exit.
        "KEYMINT_LEGACY_FLUSH_INTERVAL": _int("KEYMINT_LEGACY_FLUSH_INTERVAL", 10, minimum=1),
        "KEYMINT_LEGACY_FLUSH_THRESHOLD": _int("KEYMINT_LEGACY_FLUSH_THRESHOLD", 500, minimum=1),
        "KEYMINT_RATELIMIT_STORAGE_URL": os.environ.get(
            "KEYMINT_RATELIMIT_STORAGE_URL", "memory://"
        ),
        "KEYMINT_RATELIMIT_ENABLED": _bool("KEYMINT_RATELIMIT_ENABLED", True),
        "KEYMINT_RATELIMIT_KEY_PREFIX": os.environ.get("KEYMINT_RATELIMIT_KEY_PREFIX",
                                                       "keymint"),
        "KEYMINT_RATELIMIT_IP": _limit("KEYMINT_RATELIMIT_IP", "600 per minute"),
        "KEYMINT_RATELIMIT_CLIENT": _limit("KEYMINT_RATELIMIT_CLIENT", "120 per minute"),
        # Per key, spent only by requests that authenticated as it. Introspection and
        # revocation are sized so that a resource server never meets them: 10,000/s per key,
        # twice what one node answers (1-5k introspections/s); see docs/security.md.
        "KEYMINT_RATELIMIT_INTROSPECT": _limit("KEYMINT_RATELIMIT_INTROSPECT",
                                               "600000 per minute"),
        "KEYMINT_RATELIMIT_REVOKE": _limit("KEYMINT_RATELIMIT_REVOKE", "600000 per minute"),
        "KEYMINT_RATELIMIT_LEGACY_KEY": _limit("KEYMINT_RATELIMIT_LEGACY_KEY", "600 per minute"),
        # Refuses: failures of one client_id from one address. Alerts only: failures of one
        # client_id from anywhere (client_ids are public; they must not lock out a key).
        "KEYMINT_RATELIMIT_FAILED_CLIENT_IP": _limit("KEYMINT_RATELIMIT_FAILED_CLIENT_IP",
                                                     "10 per minute;50 per hour"),
        "KEYMINT_RATELIMIT_FAILED_CLIENT": _limit("KEYMINT_RATELIMIT_FAILED_CLIENT",
                                                  "10 per minute;50 per hour"),
        "KEYMINT_RATELIMIT_FAILED_IP": _limit("KEYMINT_RATELIMIT_FAILED_IP",
                                              "30 per minute;300 per hour"),
        "KEYMINT_TRUSTED_PROXIES": _int("KEYMINT_TRUSTED_PROXIES", 0),
        "KEYMINT_LOG_LEVEL": _choice("KEYMINT_LOG_LEVEL", "info",
                                     ("debug", "info", "warning", "error")),
        "KEYMINT_READYZ_TIMEOUT_MS": _int("KEYMINT_READYZ_TIMEOUT_MS", 2000, minimum=1),
        "KEYMINT_LAST_USED_INTERVAL": _int("KEYMINT_LAST_USED_INTERVAL", 60),
        "KEYMINT_TOKEN_RETENTION_DAYS": _int("KEYMINT_TOKEN_RETENTION_DAYS", 7),
        "KEYMINT_DATABASE_CONNECT_TIMEOUT": _int("KEYMINT_DATABASE_CONNECT_TIMEOUT", 3, minimum=1),
        "KEYMINT_ASYNC_ISSUANCE_COMMIT": _bool("KEYMINT_ASYNC_ISSUANCE_COMMIT", True),
        # Only for the benchmark's baseline run: false writes no audit events at all.
        "KEYMINT_AUDIT_ENABLED": _bool("KEYMINT_AUDIT_ENABLED", True),
        # Kill switch of the introspection fast path (app/oauth/fast_introspection.py).
        "KEYMINT_FAST_PATHS": _bool("KEYMINT_FAST_PATHS", True),
        # Mirror each committed audit event as one JSON line to the `keymint.audit` logger.
        "KEYMINT_AUDIT_LOG": _bool("KEYMINT_AUDIT_LOG", False),
        # Secrets: validated and wrapped in Secret by _secret_settings (build_config).
        "KEYMINT_AUDIT_HMAC_KEY": os.environ.get("KEYMINT_AUDIT_HMAC_KEY") or None,
        "KEYMINT_METRICS_TOKEN": os.environ.get("KEYMINT_METRICS_TOKEN") or None,
        "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY": (
            os.environ.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY") or None),
        "KEYMINT_SECRET_KEY": os.environ.get("KEYMINT_SECRET_KEY") or None,
        "KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS": _bool("KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS",
                                                       False),
        # Console single sign-on (OpenID Connect): all three or none (_console_oidc_settings).
        "KEYMINT_CONSOLE_OIDC_ISSUER": os.environ.get("KEYMINT_CONSOLE_OIDC_ISSUER") or None,
        "KEYMINT_CONSOLE_OIDC_CLIENT_ID": os.environ.get("KEYMINT_CONSOLE_OIDC_CLIENT_ID") or None,
        "KEYMINT_CONSOLE_OIDC_CLIENT_SECRET": (
            os.environ.get("KEYMINT_CONSOLE_OIDC_CLIENT_SECRET") or None),
    }


CONSOLE_OIDC_SETTINGS = ("KEYMINT_CONSOLE_OIDC_ISSUER", "KEYMINT_CONSOLE_OIDC_CLIENT_ID",
                         "KEYMINT_CONSOLE_OIDC_CLIENT_SECRET")


def _console_oidc_settings(config: dict[str, Any]) -> None:
    """The console's OpenID provider: issuer, client id and client secret, all three or none.

    The issuer is where `<issuer>/.well-known/openid-configuration` is fetched from: https, or
    http on a loopback host only (the same rule as KEYMINT_ISSUER). The secret is masked.
    """
    issuer, client_id, secret = (config.get(name) or None for name in CONSOLE_OIDC_SETTINGS)
    given = [name for name, value in zip(CONSOLE_OIDC_SETTINGS, (issuer, client_id, secret),
                                         strict=True) if value]
    if given and len(given) != len(CONSOLE_OIDC_SETTINGS):
        missing = [name for name in CONSOLE_OIDC_SETTINGS if name not in given]
        raise ConfigError(f"console single sign-on needs {', '.join(CONSOLE_OIDC_SETTINGS)} "
                          f"together; {', '.join(missing)} not set")
    if not given:
        for name in CONSOLE_OIDC_SETTINGS:
            config[name] = None
        return
    problem = _issuer_problem(issuer) if isinstance(issuer, str) else "must be a string"
    if problem is not None:
        shown = "" if "@" in str(issuer) else f", got {issuer!r}"
        raise ConfigError(f"KEYMINT_CONSOLE_OIDC_ISSUER {problem}{shown}; expected "
                          f"{ISSUER_FORM}")
    config["KEYMINT_CONSOLE_OIDC_ISSUER"] = issuer.rstrip("/")
    if not isinstance(client_id, str) or not _PRINTABLE_ASCII.fullmatch(client_id):
        raise ConfigError("KEYMINT_CONSOLE_OIDC_CLIENT_ID must be printable ASCII without "
                          "spaces")
    if not isinstance(secret, Secret):
        text = str(secret)
        if not _PRINTABLE_ASCII.fullmatch(text):
            raise ConfigError("KEYMINT_CONSOLE_OIDC_CLIENT_SECRET must be printable ASCII "
                              f"without spaces; the value set has {len(text)} characters")
        config["KEYMINT_CONSOLE_OIDC_CLIENT_SECRET"] = Secret(text.encode("ascii"))


DATABASE_FORM = ("sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE "
                 "(sqlite://// with four slashes for an absolute path)")
RATELIMIT_STORAGE_FORM = ("memory:// or a limits storage URI such as redis://HOST:6379/0, "
                          "rediss://, redis+sentinel://, redis+cluster:// or memcached://")


def _database_url(value: Any) -> None:
    """KEYMINT_DATABASE_URL: SQLite or PostgreSQL; the value is never repeated (a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(value).get_backend_name()
    except (ArgumentError, ValueError, TypeError):
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"KEYMINT_DATABASE_URL must be {DATABASE_FORM}; the value set is "
                          "not shown (it may hold a password)")


def _ratelimit_storage(value: Any) -> None:
    from limits.storage import SCHEMES

    scheme = str(value).partition("://")[0] if "://" in str(value) else ""
    if scheme not in SCHEMES or scheme.startswith("async+"):
        raise ConfigError(f"KEYMINT_RATELIMIT_STORAGE_URL must be {RATELIMIT_STORAGE_FORM}; "
                          f"got a value with scheme {scheme or '(none)'!r}")


def mask_url(value: Any) -> Any:
    """A URL with its password replaced by ***; anything else unchanged."""
    if not isinstance(value, str) or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return "***"  # unparseable: it may still hold a password
    if not password:
        return value
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|HMAC|PRIVATE|SIGNING_KEY|_TOKEN$")


def summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """The effective configuration as printed by `keymint config check` and logged by
    `keymint serve`: every KEYMINT_* setting, JSON-ready, with secrets and URL passwords
    masked (a setting added later is masked too when it is a Secret or named like one)."""
    shown: dict[str, Any] = {"KEYMINT_DATABASE_URL": mask_url(
        config.get("SQLALCHEMY_DATABASE_URI"))}
    for name, value in config.items():
        if not name.startswith("KEYMINT_"):
            continue
        if isinstance(value, Secret) or (value and isinstance(value, str | bytes)
                                         and _SECRET_NAME.search(name)):
            shown[name] = "********"
        elif isinstance(value, datetime):
            shown[name] = isoformat(value)
        elif name == "KEYMINT_LEGACY_BROWNOUTS":
            shown[name] = [f"{isoformat(start)}/{isoformat(end)}" for start, end in value]
        elif value is None or isinstance(value, bool | int | float):
            shown[name] = value
        else:
            shown[name] = mask_url(str(value))
    return dict(sorted(shown.items()))


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
    _legacy_settings(config)
    config["KEYMINT_ISSUER"] = normalise_issuer(config.get("KEYMINT_ISSUER"))
    _secret_settings(config)
    _console_oidc_settings(config)
    _ratelimit_storage(config.get("KEYMINT_RATELIMIT_STORAGE_URL") or "memory://")
    if config.get("SQLALCHEMY_DATABASE_URI"):
        _database_url(config["SQLALCHEMY_DATABASE_URI"])
    else:
        os.makedirs(instance_path, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(
            instance_path, "keymint.sqlite3"
        )
    return config
