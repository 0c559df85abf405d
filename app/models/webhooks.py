"""Webhooks: a workspace's endpoints, the outbox of events, and each event's deliveries."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.clock import utcnow
from app.models.accounts import Workspace
from app.models.base import Base, BigId, UTCDateTime


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"      # due at next_attempt_at (a claimed one: when its lease ends)
    SUCCEEDED = "succeeded"
    FAILED = "failed"        # a 4xx, or still failing 24 h after the event


class WebhookEndpoint(Base):
    """A receiver URL of one workspace, the events it wants and its signing secrets.

    The secrets are stored as given out: signing needs them, unlike a key's secret, which
    keymint only ever compares (as a digest)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    # Space-separated event types; empty: every event.
    event_types: Mapped[str] = mapped_column(Text, default="")
    # Space-separated days before a key's expiry at which key.expiring fires.
    expiring_days: Mapped[str] = mapped_column(String(64), default="30 7 1")
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    secret: Mapped[str] = mapped_column(String(64))
    previous_secret: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    workspace: Mapped[Workspace] = relationship()

    @property
    def event_type_list(self) -> list[str]:
        return self.event_types.split()

    @property
    def expiring_day_list(self) -> list[int]:
        return sorted((int(d) for d in self.expiring_days.split()), reverse=True)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_type_list

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one during its grace period."""
        found = [self.secret]
        if (self.previous_secret and self.previous_secret_expires_at is not None
                and now < self.previous_secret_expires_at):
            found.append(self.previous_secret)
        return found


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the change it reports."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebhookDelivery(Base):
    """One event for one endpoint: its status, attempts and the last response."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None]
    duration_ms: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    # Retries stop here: 24 h after the event, or after a manual retry.
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[WebhookEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()


class WebhookMark(Base):
    """A scheduled notice already sent: (endpoint, subject, mark) fires once, e.g.
    (endpoint 3, key key_…, "expiring:7")."""

    __tablename__ = "webhook_marks"
    __table_args__ = (UniqueConstraint("endpoint_id", "subject", "mark"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    subject: Mapped[str] = mapped_column(String(64))
    mark: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
