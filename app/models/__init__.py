"""The ORM models; importing this package registers every table on Base.metadata."""

from app.models.accounts import (
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    User,
    UserStatus,
    Workspace,
)
from app.models.audit import AuditEvent, AuditSeal
from app.models.base import Base
from app.models.keys import ApiKey, KeySecret
from app.models.legacy import LegacyBrownout, LegacyKey
from app.models.tokens import AccessToken

__all__ = [
    "AccessToken",
    "ApiKey",
    "AuditEvent",
    "AuditSeal",
    "Base",
    "Invitation",
    "InvitationStatus",
    "KeySecret",
    "LegacyBrownout",
    "LegacyKey",
    "Membership",
    "Role",
    "User",
    "UserStatus",
    "Workspace",
]
