"""Opaque access tokens, stored as digests, with their rotation lineage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime


class AccessToken(Base):
    __tablename__ = "access_tokens"
    __table_args__ = (Index(None, "key_id", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    jti: Mapped[str] = mapped_column(String(32), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    secret_id: Mapped[int | None] = mapped_column(ForeignKey("key_secrets.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    scopes: Mapped[str] = mapped_column(Text, default="")
    # The token's audience: resource URIs, space-separated; NULL for tokens minted before
    # resources existed (they have no `aud`).
    audience: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    rotated_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_tokens.id", ondelete="SET NULL"), index=True
    )
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_tokens.id", ondelete="SET NULL"), index=True
    )
