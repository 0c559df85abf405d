"""Resources: the APIs tokens are for (RFC 8707), with their scopes and route policies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.models.base import Base, BigId, UTCDateTime

MAX_URI_LEN = 400


class Resource(Base):
    """One operator-registered API, identified by an absolute URI (the token's audience)."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uri: Mapped[str] = mapped_column(String(MAX_URI_LEN), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Space-separated, as on keys and tokens.
    scopes: Mapped[str] = mapped_column(Text, default="")
    # The route file as canonical JSON ({"default": ..., "routes": [...]}); NULL: no policy.
    policy: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ResourceCatalog(Base):
    """One row: a random version, replaced by every change to any resource.

    The token path reads it inside its one statement, so a process's cached copy of the
    resources is never used once it is out of date (and a random value never repeats across
    databases the way a counter would).
    """

    __tablename__ = "resource_catalog"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
