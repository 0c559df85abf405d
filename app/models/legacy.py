"""Static per-workspace API keys imported from the old system, with usage counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.models.accounts import Workspace
from app.models.base import Base, BigId, UTCDateTime


class LegacyKey(Base):
    __tablename__ = "legacy_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    use_count: Mapped[int] = mapped_column(BigId, default=0)
    first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_user_agent: Mapped[str | None] = mapped_column(String(512))
    # Rejections of this key (sunset, brownout, disabled): who still tries after the switch-off.
    rejected_count: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    last_rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    migrated_to: Mapped[str | None] = mapped_column(String(32))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    workspace: Mapped[Workspace] = relationship()


class LegacyBrownout(Base):
    """A brownout stored with `keymint legacy brownouts add`: legacy keys are refused in
    [starts_at, ends_at), as in a KEYMINT_LEGACY_BROWNOUTS window (those are not stored)."""

    __tablename__ = "legacy_brownouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
