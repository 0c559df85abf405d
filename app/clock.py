"""The one time source: timezone-aware UTC now, patched by freezegun in tests."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch(moment: datetime) -> int:
    """Integer epoch seconds, as OAuth `exp`/`iat` want them."""
    return int(moment.timestamp())


def isoformat(moment: datetime | None) -> str | None:
    """RFC 3339 UTC with a trailing Z, the management API's time format."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def isoformat_us(moment: datetime) -> str:
    """RFC 3339 UTC that always carries microseconds (audit times: stable text, exact order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; a value without an offset is rejected, not guessed."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone; use e.g. 2030-01-01T00:00:00Z")
    return value.astimezone(UTC)
