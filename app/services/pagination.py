"""Keyset pages: the one cursor format the listings hand out, and where a page ends."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from app.services.errors import InvalidInput

T = TypeVar("T")

# Ids are 64-bit on PostgreSQL; a longer number is not a cursor keymint made.
MAX_ID_DIGITS = 18
_MAX_CURSOR_LEN = 64


def encode_cursor(kind: str, last_id: int) -> str:
    """Opaque to clients: it names the listing and the last row of a page, so rows added
    meanwhile never shift or repeat pages."""
    raw = f"{kind}:{last_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(kind: str, cursor: str, *, rejection: str) -> int:
    """The id `cursor` continues from; InvalidInput naming `cursor` unless this server made
    it for the same listing. `rejection` is the listing's own wording of that 400."""
    error = InvalidInput(rejection, field="cursor")
    if not cursor or len(cursor) > _MAX_CURSOR_LEN:
        raise error
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise error from None
    found, _, number = raw.partition(":")
    if found != kind or not number.isdigit() or len(number) > MAX_ID_DIGITS:
        raise error
    return int(number)


def cut(rows: Sequence[T], limit: int) -> tuple[list[T], int | None]:
    """A page from up to `limit + 1` fetched rows (each with an `id`): the first `limit`,
    and the id of the last of them when there is more to read (None on the last page)."""
    page = list(rows[:limit])
    more = len(rows) > limit and bool(page)
    return page, page[-1].id if more else None  # type: ignore[attr-defined]
