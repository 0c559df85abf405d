"""Signing keys of JWT access tokens: public part, encrypted private part, and their timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.models.base import Base, BigId, UTCDateTime


class SigningKey(Base):
    """One key pair. Its state follows from three instants, so no job has to flip it:

    pending until `activates_at` (published, not yet signing), active until `retires_at`
    (signing), then retired and still published until `published_until` (every token it
    signed has expired by then).
    """

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)  # JSON, without any private member
    # The private JWK as a compact JWE (dir + A256GCM) under KEYMINT_SIGNING_KEY_ENCRYPTION_KEY.
    private_jwe: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activates_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
