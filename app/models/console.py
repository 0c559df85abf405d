"""Web console sign-in state: server-side console sessions and one-time sign-in links."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.models.accounts import User
from app.models.base import Base, BigId, UTCDateTime


class ConsoleSession(Base):
    """One signed-in browser. The cookie holds a random id; only its SHA-256 is stored, so a
    leaked database row cannot be replayed as a cookie."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    id_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # how the person signed in: sso | link
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The absolute end, whatever the activity (12 h after sign-in).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))

    user: Mapped[User] = relationship()


class ConsoleLoginLink(Base):
    """A one-time sign-in link made by an operator (`keymint console login-link EMAIL`).

    Only the token's SHA-256 is stored; used_at is set once, by the request that consumes it.
    """

    __tablename__ = "console_login_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who made it (an audit actor id such as "cli"), and an optional note for the trail.
    created_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(200))

    user: Mapped[User] = relationship()
