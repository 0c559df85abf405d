"""Append-only audit events and the seal records that chain them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime

# Every stored fact of an event, in the order exports and the API show them: what the chain
# hashes, what `audit export` writes and what the log mirror sends. seal_id and event_hash
# are the chain's own bookkeeping, not facts about what happened.
EVENT_FIELDS = ("id", "occurred_at", "workspace_id", "actor_type", "actor_id", "actor_key",
                "action", "target_type", "target_id", "ip", "user_agent", "request_id",
                "details")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index(None, "workspace_id", "id"),
        Index(None, "action"),
        Index(None, "seal_id"),
        # "events about these keys" (member visibility, the key= filter) without a scan
        Index(None, "workspace_id", "actor_key"),
        Index(None, "workspace_id", "target_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id"))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_key: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Set when a seal takes the event into the hash chain; unsealed rows are NULL.
    seal_id: Mapped[int | None] = mapped_column(ForeignKey("audit_seals.id"))
    # SHA-256 of the event's canonical content, written by the sealer with seal_id
    # (app/services/audit_chain.py); lets verify name the exact event that changed.
    event_hash: Mapped[str | None] = mapped_column(String(64))


class AuditSeal(Base):
    """One link of the hash chain: covers a set of events and the previous seal's hash."""

    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    event_count: Mapped[int]
    first_event_id: Mapped[int | None] = mapped_column(BigId)
    last_event_id: Mapped[int | None] = mapped_column(BigId)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
