"""Stable JSON shapes of keys, tokens, invitations, webhooks and audit events (API and CLI)."""

from __future__ import annotations

import json
from typing import Any

from app.clock import isoformat, isoformat_us, utcnow
from app.models import (
    AccessToken,
    ApiKey,
    Invitation,
    LegacyKey,
    Resource,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.models.audit import EVENT_FIELDS


def current_secret_hint(key: ApiKey) -> str | None:
    for secret in reversed(key.secrets):
        if secret.revoked_at is None and secret.expires_at is None:
            return secret.hint
    return None


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "client_id": key.client_id,
        "name": key.name,
        "workspace": key.workspace.slug,
        # A disabled owner's keys authenticate nothing, whatever `state` says about the key.
        "owner": {"id": str(key.user_id), "email": key.user.email, "status": key.user.status},
        "scopes": key.scope_list,
        "state": key.state(utcnow()),
        "created_at": isoformat(key.created_at),
        "expires_at": isoformat(key.expires_at),
        "revoked_at": isoformat(key.revoked_at),
        "last_used_at": isoformat(key.last_used_at),
        "last_used_ip": key.last_used_ip,
        "secret_hint": current_secret_hint(key),
        "rate_limit": key.rate_limit,
        "resources": key.resource_list,
        "introspects_for": key.introspects_for,
    }


def resource_json(resource: Resource) -> dict[str, Any]:
    """A registered resource with its route policy (null: none); the same for API and CLI."""
    return {
        "id": str(resource.id),
        "uri": resource.uri,
        "name": resource.name,
        "scopes": resource.scopes.split(),
        "routes": json.loads(resource.policy) if resource.policy else None,
        "created_at": isoformat(resource.created_at),
        "updated_at": isoformat(resource.updated_at),
    }


def token_json(token: AccessToken) -> dict[str, Any]:
    return {
        "jti": token.jti,
        "scopes": token.scopes.split(),
        "issued_at": isoformat(token.issued_at),
        "expires_at": isoformat(token.expires_at),
        "rotated_from": bool(token.rotated_from_id),
        # Tokens issued before resources existed have none: an empty array.
        "audience": token.audience.split() if token.audience else [],
    }


def invitation_json(invitation: Invitation) -> dict[str, Any]:
    """What the inviter gave and the invitation's own state: never whether the email has an
    account."""
    return {"id": invitation.public_id, "workspace": invitation.workspace.slug,
            "email": invitation.email, "role": invitation.role,
            "status": invitation.state(utcnow()).value,
            "expires_at": isoformat(invitation.expires_at),
            "created_at": isoformat(invitation.created_at)}


def legacy_state(row: LegacyKey, sunset: Any) -> str:
    if row.disabled_at is not None:
        return "disabled"
    return "sunset" if utcnow() >= sunset else "active"


def legacy_key_json(row: LegacyKey, sunset: Any) -> dict[str, Any]:
    """Metadata of a legacy key: never the key or its digest."""
    return {
        "id": str(row.id),
        "label": row.label,
        "state": legacy_state(row, sunset),
        "imported_at": isoformat(row.imported_at),
        "use_count": row.use_count,
        "first_used_at": isoformat(row.first_used_at),
        "last_used_at": isoformat(row.last_used_at),
        "last_ip": row.last_ip,
        "last_user_agent": row.last_user_agent,
        "rejected_count": row.rejected_count,
        "last_rejected_at": isoformat(row.last_rejected_at),
        "migrated_to": row.migrated_to,
        "disabled_at": isoformat(row.disabled_at),
    }


def audit_event_json(event: Any) -> dict[str, Any]:
    """One audit event (ORM object or result row), flat so it maps onto CSV columns too.

    Ids are strings, as everywhere in the API; occurred_at keeps its microseconds.
    """
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    shaped = {name: getattr(event, name) for name in EVENT_FIELDS}
    shaped.update(id=text(event.id), occurred_at=isoformat_us(event.occurred_at),
                  workspace_id=text(event.workspace_id), details=event.details or {})
    shaped["sealed"] = getattr(event, "seal_id", None) is not None
    return shaped


def webhook_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint without its secrets (those are shown once, at creation and rotation)."""
    now = utcnow()
    in_grace = (endpoint.previous_secret_expires_at is not None
                and now < endpoint.previous_secret_expires_at)
    return {"id": endpoint.public_id, "url": endpoint.url,
            "description": endpoint.description,
            "event_types": endpoint.event_type_list, "expiring_days": endpoint.expiring_day_list,
            "enabled": endpoint.enabled, "disabled_reason": endpoint.disabled_reason,
            "disabled_at": isoformat(endpoint.disabled_at),
            "consecutive_failures": endpoint.consecutive_failures,
            "previous_secret_expires_at": isoformat(endpoint.previous_secret_expires_at)
            if in_grace else None,
            "created_at": isoformat(endpoint.created_at),
            "updated_at": isoformat(endpoint.updated_at)}


def webhook_delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.public_id, "webhook_id": delivery.endpoint.public_id,
            "event_id": delivery.event.public_id, "event_type": delivery.event.type,
            "status": delivery.status, "attempts": delivery.attempts,
            "next_attempt_at": isoformat(delivery.next_attempt_at),
            "last_attempt_at": isoformat(delivery.last_attempt_at),
            "response_status": delivery.response_status,
            "duration_ms": delivery.duration_ms, "last_error": delivery.last_error,
            "retry_until": isoformat(delivery.retry_until),
            "created_at": isoformat(delivery.created_at),
            "completed_at": isoformat(delivery.completed_at)}
