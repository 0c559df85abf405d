"""Structured JSON logging with secret redaction, shared by the app and the server (Granian).

One JSON object per line: time, level, logger, message, plus request fields when a request
is being served (request_id, method, path, status, duration_ms, client_ip), and on the
request line also client_id, error_code and user_agent when they apply. keymint never
logs a credential on purpose; the redactor is the second line of defence for anything a
library or a future change might log: secrets, tokens, webhook signing secrets, 64-hex
digests, Basic/Bearer values and Authorization / X-API-Key header values are replaced by
"[REDACTED]".
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from app.credentials import CREDENTIAL_TEXT, JWT_TEXT, REDACTED

_PATTERNS = [
    # keymint secrets and tokens (the definition the audit trail's User-Agent shares)
    CREDENTIAL_TEXT,
    # JWT access tokens
    JWT_TEXT,
    # SHA-256 digests (how secrets and tokens are stored) and any longer hex run
    re.compile(r"\b[0-9a-fA-F]{64,}\b"),
    # HTTP credentials however they are rendered: "Basic xxx", "Bearer xxx"
    re.compile(r"(?i)\b(?:basic|bearer)\s+[A-Za-z0-9+/=._~-]+"),
    # header dumps: Authorization: ..., 'X-API-Key': '...', x_api_key=..., HTTP_AUTHORIZATION
    re.compile(r"(?i)(?:http_)?(?:authorization|x[-_]api[-_]key|client_secret|access_token"
               r"|refresh_token|password)[\"']?\s*[:=]\s*[\"']?[^\s\"',;&}]+"),
]

# A literal every match of the pattern at the same index must contain (lower-cased), so a
# line without it skips that regex: most lines hold none, and the case-insensitive
# alternations cost ~20 µs per line to scan. None = always scan (hex runs have no literal).
_MUST_CONTAIN: list[tuple[str, ...] | None] = [
    ("sk_", "at_", "whsec_", "sil_", "cs_"),
    ("eyj",),
    None,
    ("basic", "bearer"),
    # x[-_]api[-_]key: "api-key" or "api_key" (plain "api" is in every /api/ path)
    ("authorization", "api-key", "api_key", "client_secret", "access_token", "refresh_token",
     "password"),
]

REQUEST_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "client_ip")
# Fields only the request line carries (app/web/telemetry.py), taken from the record alone:
# other lines do not look them up.
REQUEST_LINE_FIELDS = ("client_id", "error_code", "user_agent")

_HEX_RUN = 64  # the shortest run the hex pattern matches
_BLOCK = _HEX_RUN // 2


def _may_hold_hex_run(text: str) -> bool:
    """False only if `text` cannot hold 64 hex characters in a row (cheap, no regex).

    Any such run covers a whole 32-character block starting at a multiple of 32, and that
    block is then alphanumeric; a log line almost never has one, so the hex regex (~8 µs on
    a request line: it tries a match at every hex character) is skipped.
    """
    for start in range(0, len(text) - _BLOCK, _BLOCK):
        if text[start:start + _BLOCK].isalnum():
            return True
    return False


def redact(text: str) -> str:
    lowered = text.lower()
    for pattern, needles in zip(_PATTERNS, _MUST_CONTAIN, strict=True):
        if needles is None:
            if _may_hold_hex_run(text):
                text = pattern.sub(REDACTED, text)
            continue
        for needle in needles:
            if needle in lowered:
                text = pattern.sub(REDACTED, text)
                break
    return text


# json.dumps() with keyword arguments builds a new encoder for every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_last_second: tuple[int, str] = (-1, "")


def _timestamp(created: float, msecs: float) -> str:
    """RFC 3339 UTC with milliseconds; the part up to the second is formatted once a second."""
    global _last_second
    second = int(created)
    cached, prefix = _last_second
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, prefix)
    return f"{prefix}.{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """Render a record as one redacted JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            value = getattr(record, field, None)
            if value is None:
                value = _request_field(field)
            if value is not None:
                entry[field] = value
        for field in REQUEST_LINE_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(_ENCODER.encode(entry))


# Set by the web layer (app/web/context.py) at init_app: logs run below the web layer and
# must not import it, yet every line inside a request carries its request id and client IP.
_request_fields: Callable[[str], Any] | None = None


def provide_request_fields(provider: Callable[[str], Any] | None) -> None:
    """Install `provider(field)`: the value of a REQUEST_FIELDS entry for the current request,
    or None outside one (or for a field it does not know)."""
    global _request_fields
    _request_fields = provider


def _request_field(field: str) -> Any:
    provider = _request_fields
    return None if provider is None else provider(field)


class RedactingFilter(logging.Filter):
    """Redact the rendered message of a record, for handlers keymint does not format."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_HANDLER_MARK = "_keymint_json_handler"


class _Stderr:
    """Whatever sys.stderr is at write time (test runners and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", stream: Any = None) -> logging.Handler:
    """Install one JSON handler on the root logger (idempotent); returns it."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setLevel(level.upper())
            return handler
    handler = logging.StreamHandler(stream or _Stderr())
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler.setLevel(level.upper())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler
