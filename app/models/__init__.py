"""The ORM models; importing this package registers every table on Base.metadata."""

from app.models.accounts import (
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    TokenFormat,
    User,
    UserStatus,
    Workspace,
)
from app.models.audit import AuditEvent, AuditSeal
from app.models.base import Base
from app.models.console import ConsoleLoginLink, ConsoleSession
from app.models.keys import ApiKey, KeySecret
from app.models.legacy import LegacyBrownout, LegacyKey
from app.models.resources import Resource, ResourceCatalog
from app.models.signing_keys import SigningKey
from app.models.tokens import AccessToken
from app.models.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookMark,
)

__all__ = [
    "AccessToken",
    "ApiKey",
    "AuditEvent",
    "AuditSeal",
    "Base",
    "ConsoleLoginLink",
    "ConsoleSession",
    "DeliveryStatus",
    "Invitation",
    "InvitationStatus",
    "KeySecret",
    "LegacyBrownout",
    "LegacyKey",
    "Membership",
    "Resource",
    "ResourceCatalog",
    "Role",
    "SigningKey",
    "TokenFormat",
    "User",
    "UserStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookMark",
    "Workspace",
]
