"""API keys (the OAuth clients) and their hashed secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.models.accounts import User, Workspace
from app.models.base import Base, BigId, UTCDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    # Space-separated, as in OAuth; small enough that a join table would only cost a query.
    scopes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    # The key's own request limit, e.g. "1000 per minute" (limits' notation); NULL: the
    # server's per-key defaults (KEYMINT_RATELIMIT_CLIENT and friends).
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    # The resource URIs the key is restricted to, space-separated like scopes (read with the
    # credential in one row); NULL: unrestricted.
    resources: Mapped[str | None] = mapped_column(Text)
    # A resource URI: the key is that resource's server, and introspection by it answers
    # inactive for any token whose audience lacks it.
    introspects_for: Mapped[str | None] = mapped_column(String(400))

    user: Mapped[User] = relationship()
    workspace: Mapped[Workspace] = relationship()
    secrets: Mapped[list[KeySecret]] = relationship(
        back_populates="key", order_by="KeySecret.id"
    )

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def resource_list(self) -> list[str] | None:
        """The resources the key is restricted to; None: unrestricted."""
        return None if self.resources is None else self.resources.split()

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.is_expired(now):
            return "expired"
        return "active"


class KeySecret(Base):
    """One secret of a key. Current: expires_at is NULL. Previous: expires_at ends its grace."""

    __tablename__ = "key_secrets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    key: Mapped[ApiKey] = relationship(back_populates="secrets")
