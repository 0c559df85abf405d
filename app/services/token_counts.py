"""What a unit of work did to access tokens, noted on its session until the session commits.

Services note their own results here (issued, rotated, revoked, with how many); whoever
counts them (app/runtime/metrics.py) takes the notes when the session commits, and a rollback
drops them, so work that never happened is never counted. Independent of auditing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

ISSUED = "issued"      # label: the grant, "client_credentials" or "rotation"
ROTATED = "rotated"    # no label
REVOKED = "revoked"    # label: the reason

_PENDING = "keymint_token_counts"

Note = tuple[str, str, int]  # (what, label, how many)


def note(session: Session, what: str, label: str = "", count: int = 1) -> None:
    if count:
        session.info.setdefault(_PENDING, []).append((what, label, count))


def take(session: Session) -> list[Note]:
    """The notes of the transaction that just committed (and forget them)."""
    return session.info.pop(_PENDING, None) or []


def drop(session: Session) -> None:
    """The transaction rolled back: none of it happened."""
    session.info.pop(_PENDING, None)
