"""People, tenants and who belongs where: User, Workspace, Membership, Invitation."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.models.base import Base, BigId, UTCDateTime

# New workspaces cap key lifetime at a year (GitLab's default since 16.0): a key that can
# create keys cannot mint itself an immortal successor. Owners may clear it; existing rows
# keep whatever policy they had.
DEFAULT_MAX_KEY_LIFETIME_DAYS = 365


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class TokenFormat(enum.StrEnum):
    OPAQUE = "opaque"  # at_… looked up by digest; resource servers introspect
    JWT = "jwt"  # RFC 9068 JWT, also stored by digest; resource servers may validate locally


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def manages_workspace(self) -> bool:
        return self in (Role.OWNER, Role.ADMIN)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.ACTIVE


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    max_key_lifetime_days: Mapped[int | None] = mapped_column(
        default=DEFAULT_MAX_KEY_LIFETIME_DAYS)
    default_key_lifetime_days: Mapped[int | None]
    token_ttl_seconds: Mapped[int | None]
    # TokenFormat: what /oauth/token issues for this workspace's keys.
    token_format: Mapped[str] = mapped_column(String(8), default="opaque",
                                              server_default="opaque")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="workspace")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    workspace: Mapped[Workspace] = relationship(back_populates="memberships")


class InvitationStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"  # never stored: a pending invitation past its expires_at


class Invitation(Base):
    """An offer of a role in a workspace to an email address; a membership only once that
    address's own user accepts. It names an email, never a user, so making one reveals
    nothing about whether the address has an account."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_workspace_id_email", "workspace_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=InvitationStatus.PENDING.value)
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    accepted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    workspace: Mapped[Workspace] = relationship()

    def state(self, now: datetime) -> InvitationStatus:
        """The stored status, except that a pending invitation expires at expires_at."""
        if self.status == InvitationStatus.PENDING and now >= self.expires_at:
            return InvitationStatus.EXPIRED
        return InvitationStatus(self.status)
