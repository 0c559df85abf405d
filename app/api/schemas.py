"""The JSON Schemas of the management API: one per route, used to validate and to document.

Request schemas are what `app.web.validation` checks bodies and query strings against, and
what `/openapi.json` publishes as `requestBody`/parameters — the same objects, so the
document and the validator cannot drift apart. Response schemas describe what the views
and `app.serialize` return.
"""

from __future__ import annotations

from typing import Any

from app.models import Role
from app.models.resources import MAX_URI_LEN
from app.services.accounts import EMAIL_PATTERN, MAX_POLICY_DAYS
from app.services.audit_query import DEFAULT_PAGE_SIZE as AUDIT_DEFAULT_PAGE_SIZE
from app.services.audit_query import MAX_PAGE_SIZE as AUDIT_MAX_PAGE_SIZE
from app.services.keys import (
    MAX_GRACE_PERIOD,
    MAX_NAME_LEN,
    MAX_PAGE_SIZE,
    MAX_RATE_LIMIT_LEN,
    MAX_SCOPES,
    SCOPE_PATTERN,
)
from app.services.webhooks import (
    DELIVERY_ID_PATTERN,
    ENDPOINT_ID_PATTERN,
    EVENT_TYPES,
    MAX_DESCRIPTION_LEN,
    MAX_EXPIRING_DAY,
    MAX_URL_LEN,
)
from app.services.webhooks import MAX_PAGE_SIZE as WEBHOOK_MAX_PAGE_SIZE

Schema = dict[str, Any]

# RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash.
SCOPE: Schema = {"type": "string", "pattern": SCOPE_PATTERN,
                 "description": "An OAuth scope token (RFC 6749 §3.3)."}
SCOPES: Schema = {"type": "array", "items": SCOPE, "maxItems": MAX_SCOPES}
KEY_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN,
                    "pattern": r"^[^\u0000-\u001f\u007f]+$",
                    "description": "Free text without control characters; trimmed."}
TIMESTAMP: Schema = {"type": "string", "format": "date-time",
                     "description": "RFC 3339 with a timezone, e.g. 2030-01-01T00:00:00Z."}
EXPIRES_IN_DAYS: Schema = {"type": "integer", "minimum": 1, "maximum": 36500}
RATE_LIMIT: Schema = {
    "type": ["string", "null"], "maxLength": MAX_RATE_LIMIT_LEN,
    "description": "The key's own request limit over all OAuth endpoints, in the `limits` "
                   "notation: '1000 per minute', '50/second'. Replaces the server's per-key "
                   "defaults for this key; null: the defaults. Admins and owners only.",
    "examples": ["1000 per minute"]}
RESOURCE_URI: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_URI_LEN,
                        "description": "A registered resource's absolute URI (RFC 8707), "
                                       "e.g. https://orders.example.com."}
KEY_RESOURCES: Schema = {
    "type": "array", "items": RESOURCE_URI, "minItems": 1, "maxItems": MAX_SCOPES,
    "description": "Restrict the key to these resources: its tokens are only for them and "
                   "its scopes must be ones they define (or `introspect`). Absent: "
                   "unrestricted."}
INTROSPECTS_FOR: Schema = {
    **RESOURCE_URI,
    "description": "Make the key that resource's server: its introspection answers "
                   "{\"active\": false} for any token whose audience lacks the resource, and "
                   "it may ask route decisions (`method`, `path`)."}
ROLE: Schema = {"type": "string", "enum": [r.value for r in Role]}
POLICY_DAYS: Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_POLICY_DAYS}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (),
            description: str = "", exclusive: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties,
                      "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if exclusive:
        schema["not"] = {"required": list(exclusive)}
    if description:
        schema["description"] = description
    return schema


# --- request bodies ----------------------------------------------------------------------

KEY_CREATE = _object(
    {"name": KEY_NAME, "scopes": SCOPES,
     "expires_at": TIMESTAMP, "expires_in_days": EXPIRES_IN_DAYS, "rate_limit": RATE_LIMIT,
     "resources": KEY_RESOURCES, "introspects_for": INTROSPECTS_FOR},
    required=("name", "scopes"), exclusive=("expires_at", "expires_in_days"),
    description="Give expires_at or expires_in_days, not both. Without either, the key "
                "gets the workspace's default lifetime (if any). Scopes: only those the "
                "calling key holds; management scopes only for admins and owners.")

KEY_UPDATE = _object(
    {"name": KEY_NAME, "scopes": {**SCOPES, "description": "Only narrows: every scope "
                                  "must already be held by the key."},
     "expires_at": {**TIMESTAMP, "type": ["string", "null"],
                    "description": "RFC 3339; null removes the expiry (only without a "
                                   "workspace maximum lifetime)."},
     "expires_in_days": EXPIRES_IN_DAYS, "rate_limit": RATE_LIMIT,
     "resources": {**KEY_RESOURCES, "description": "Only narrows: an unrestricted key may be "
                   "restricted, a restricted one only to fewer resources. Live tokens whose "
                   "audience holds a dropped resource are revoked."},
     "introspects_for": {**INTROSPECTS_FOR, "description": "Bind the key to its resource "
                         "once; it cannot be moved or cleared afterwards."}},
    exclusive=("expires_at", "expires_in_days"),
    description="Every field is optional; absent fields stay as they are.")

KEY_ROTATE = _object(
    {"grace_period": {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_PERIOD,
                      "default": 86400,
                      "description": "Seconds the previous secret keeps working; 0 ends it "
                                     "now. Never past the key's expiry."}},
    description="The body is optional.")

MEMBER_ADD = _object(
    {"email": {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN},
     "role": {**ROLE, "default": "member"}},
    required=("email",),
    description="Invites an email address, whether or not it has an account; it becomes a "
                "member once its own user accepts. Admins invite members; only owners "
                "invite admins or owners.")

MEMBER_UPDATE = _object({"role": ROLE}, required=("role",))

WORKSPACE_UPDATE = _object(
    {"max_key_lifetime_days": POLICY_DAYS,
     "default_key_lifetime_days": POLICY_DAYS,
     "token_ttl_seconds": {"type": ["integer", "null"], "minimum": 1,
                           "description": "Default access-token lifetime; at most the "
                                          "server's KEYMINT_MAX_ACCESS_TOKEN_TTL."},
     "token_format": {"type": "string", "enum": ["opaque", "jwt"],
                      "description": "What /oauth/token issues: opaque `at_…` tokens, or "
                                     "RFC 9068 JWTs resource servers can validate locally "
                                     "(docs/jwt.md). jwt needs the server's "
                                     "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY."}},
    description="Owners only. null clears a policy; absent fields stay as they are.")

# --- query strings -----------------------------------------------------------------------

KEY_LIST_QUERY = _object(
    {"user": {"type": "string", "minLength": 1, "maxLength": 254,
              "description": "A user id or email; members only ever see their own keys."},
     "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
     "expiring_within_days": {"type": "integer", "minimum": 1, "maximum": 36500,
                              "description": "Active keys whose expiry falls within the "
                                             "next N days."},
     "cursor": {"type": "string", "minLength": 1, "maxLength": 64,
                "description": "next_cursor of the previous page (opaque)."},
     "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50}})

AUDIT_EVENT_QUERY = _object(
    {"action": {"type": "string", "minLength": 1, "maxLength": 64,
                "description": "Exact action, or a prefix ending in '.', e.g. key."},
     "actor": {"type": "string", "minLength": 1, "maxLength": 64,
               "description": "A user id or a key's client_id."},
     "key": {"type": "string", "minLength": 1, "maxLength": 64,
             "description": "A key's client_id (as actor or target)."},
     "since": TIMESTAMP, "until": TIMESTAMP,
     "cursor": {"type": "string", "minLength": 1, "maxLength": 128,
                "description": "next_cursor of the previous page (opaque)."},
     "limit": {"type": "integer", "minimum": 1, "maximum": AUDIT_MAX_PAGE_SIZE,
               "default": AUDIT_DEFAULT_PAGE_SIZE}})

LEGACY_MAX_PAGE = 500
LEGACY_KEY_LIST_QUERY = _object(
    {"cursor": {"type": "string", "pattern": "^[0-9]{1,18}$",
                "description": "next_cursor of the previous page (opaque)."},
     "limit": {"type": "integer", "minimum": 1, "maximum": LEGACY_MAX_PAGE, "default": 100}})

# --- responses ---------------------------------------------------------------------------

NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"},
                   "field": {"type": "string",
                             "description": "The request field the error is about."}},
}

KEY: Schema = {
    "type": "object",
    "required": ["client_id", "name", "workspace", "owner", "scopes", "state", "created_at",
                 "expires_at", "revoked_at", "last_used_at", "last_used_ip", "secret_hint",
                 "rate_limit", "resources", "introspects_for"],
    "properties": {
        "client_id": {"type": "string", "pattern": "^key_[0-9A-Za-z]{24}$"},
        "name": {"type": "string"},
        "workspace": {"type": "string", "description": "Workspace slug."},
        "owner": {"type": "object", "required": ["id", "email", "status"],
                  "properties": {"id": {"type": "string"}, "email": {"type": "string"},
                                 "status": {"type": "string", "enum": ["active", "disabled"],
                                            "description": "A disabled owner's keys and "
                                                           "tokens work nowhere."}}},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": NULLABLE_TIME,
        "revoked_at": NULLABLE_TIME,
        "last_used_at": NULLABLE_TIME,
        "last_used_ip": {"type": ["string", "null"]},
        "secret_hint": {"type": ["string", "null"],
                        "description": "The first characters of the current secret."},
        "rate_limit": {"type": ["string", "null"],
                       "description": "The key's own request limit; null: server defaults."},
        "resources": {"type": ["array", "null"], "items": {"type": "string"},
                      "description": "The resources the key is restricted to; null: "
                                     "unrestricted."},
        "introspects_for": {"type": ["string", "null"],
                            "description": "The resource this key serves as introspecting "
                                           "resource server; null: none."},
    },
}

ROUTE_POLICY: Schema = {
    "type": ["object", "null"],
    "description": "The route policy (the route file): a token may call a listed route when "
                   "it holds any one of the rule's scopes; the most literal matching template "
                   "wins; unlisted routes need `default` (a scope) or are denied. null: no "
                   "policy (the audience alone decides).",
    "required": ["default", "routes"],
    "properties": {
        "default": {"type": "string", "description": "`deny` or one of the scopes."},
        "routes": {"type": "array", "items": {
            "type": "object", "required": ["method", "path", "scopes"],
            "properties": {"method": {"type": "string"},
                           "path": {"type": "string", "examples": ["/v1/orders/{id}"]},
                           "scopes": {"type": "array", "items": {"type": "string"}}}}}}}

RESOURCE: Schema = {
    "type": "object",
    "required": ["id", "uri", "name", "scopes", "routes", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string", "description": "`keymint` for keymint's own API."},
        "uri": {"type": "string", "description": "The RFC 8707 identifier; a token's `aud`."},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "routes": ROUTE_POLICY,
        "created_at": NULLABLE_TIME,
        "updated_at": NULLABLE_TIME,
    },
}

RESOURCE_LIST: Schema = {
    "type": "object", "required": ["resources"],
    "properties": {"resources": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Resource"}}}}

KEY_WITH_SECRET: Schema = {
    "allOf": [{"$ref": "#/components/schemas/Key"}],
    "type": "object",
    "required": ["client_secret"],
    "properties": {"client_secret": {"type": "string", "pattern": "^sk_[0-9A-Za-z]{46}$",
                                     "description": "Shown once; store it now."}},
}

KEY_ROTATED: Schema = {
    "allOf": [{"$ref": "#/components/schemas/KeyWithSecret"}],
    "type": "object",
    "required": ["previous_secret_expires_at"],
    "properties": {"previous_secret_expires_at": {
        **NULLABLE_TIME, "description": "When the previous secret stops working; null if "
                                        "it already has (grace_period 0)."}},
}

KEY_PAGE: Schema = {
    "type": "object",
    "required": ["keys", "next_cursor"],
    "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}},
                   "next_cursor": {"type": ["string", "null"],
                                   "description": "Pass as `cursor` for the next page; null "
                                                  "on the last page."}},
}

TOKEN: Schema = {
    "type": "object",
    "required": ["jti", "scopes", "issued_at", "expires_at", "rotated_from", "audience"],
    "properties": {
        "jti": {"type": "string", "description": "The id introspection reports as `jti`."},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "issued_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "rotated_from": {"type": "boolean",
                         "description": "True if issued by POST /oauth/rotate."},
        "audience": {"type": "array", "items": {"type": "string"},
                     "description": "The resources the token is for (RFC 8707; introspection's "
                                    "`aud`); empty for tokens issued before resources "
                                    "existed."},
    },
}

TOKEN_LIST: Schema = {
    "type": "object", "required": ["tokens"],
    "properties": {"tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}},
}

TOKENS_REVOKED: Schema = {
    "type": "object", "required": ["revoked"],
    "properties": {"revoked": {"type": "integer", "minimum": 0}},
}

MEMBER: Schema = {
    "type": "object",
    "required": ["user_id", "email", "role", "status", "joined_at"],
    "properties": {"user_id": {"type": "string"}, "email": {"type": "string"},
                   "role": ROLE, "status": {"type": "string", "enum": ["active", "disabled"]},
                   "joined_at": {"type": "string", "format": "date-time"}},
}

MEMBER_LIST: Schema = {
    "type": "object", "required": ["members"],
    "properties": {"members": {"type": "array",
                               "items": {"$ref": "#/components/schemas/Member"}}},
}

INVITATION_ID_PATTERN = "^inv_[0-9A-Za-z]{24}$"

INVITATION: Schema = {
    "type": "object",
    "required": ["id", "workspace", "email", "role", "status", "expires_at", "created_at"],
    "description": "What the inviter gave and the invitation's own state; nothing about "
                   "whether the email has an account.",
    "properties": {
        "id": {"type": "string", "pattern": INVITATION_ID_PATTERN},
        "workspace": {"type": "string", "description": "Workspace slug."},
        "email": {"type": "string", "description": "The invited address (lowercased)."},
        "role": ROLE,
        "status": {"type": "string", "enum": ["pending", "accepted", "revoked", "expired"]},
        "expires_at": {"type": "string", "format": "date-time",
                       "description": "7 days after created_at; from this instant on the "
                                      "invitation is expired."},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

INVITATION_LIST: Schema = {
    "type": "object", "required": ["invitations"],
    "properties": {"invitations": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/Invitation"}}},
}

WORKSPACE: Schema = {
    "type": "object",
    "required": ["id", "slug", "name", "created_at", "max_key_lifetime_days",
                 "default_key_lifetime_days", "token_ttl_seconds",
                 "effective_token_ttl_seconds", "max_token_ttl_seconds", "token_format"],
    "properties": {
        "id": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "max_key_lifetime_days": {"type": ["integer", "null"]},
        "default_key_lifetime_days": {"type": ["integer", "null"]},
        "token_ttl_seconds": {"type": ["integer", "null"]},
        "effective_token_ttl_seconds": {"type": "integer",
                                        "description": "What /oauth/token issues now."},
        "max_token_ttl_seconds": {"type": "integer",
                                  "description": "The server-wide upper bound."},
        "token_format": {"type": "string", "enum": ["opaque", "jwt"]},
    },
}

# --- webhooks ------------------------------------------------------------------------------

WEBHOOK_URL: Schema = {
    "type": "string", "minLength": 1, "maxLength": MAX_URL_LEN,
    "description": "https only, and never a loopback, private, link-local or metadata "
                   "address (checked now and again at every delivery, after DNS), unless "
                   "the server sets KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS=true (which also "
                   "allows http)."}
WEBHOOK_EVENT_TYPES: Schema = {
    "type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)},
    "maxItems": len(EVENT_TYPES),
    "description": "The events to receive; empty or absent: every event."}
WEBHOOK_EXPIRING_DAYS: Schema = {
    "type": "array", "minItems": 1, "maxItems": 10,
    "items": {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRING_DAY},
    "description": "Days before a key's expiry at which key.expiring fires (default 30, 7, "
                   "1); each fires once per key."}
WEBHOOK_DESCRIPTION: Schema = {"type": "string", "maxLength": MAX_DESCRIPTION_LEN,
                               "pattern": r"^[^\u0000-\u001f\u007f]*$"}

WEBHOOK_CREATE = _object(
    {"url": WEBHOOK_URL, "event_types": WEBHOOK_EVENT_TYPES,
     "description": WEBHOOK_DESCRIPTION, "expiring_days": WEBHOOK_EXPIRING_DAYS,
     "enabled": {"type": "boolean", "default": True}},
    required=("url",),
    description="The response carries the signing secret (whsec_…), shown only then.")

WEBHOOK_UPDATE = _object(
    {"url": WEBHOOK_URL, "event_types": WEBHOOK_EVENT_TYPES,
     "description": WEBHOOK_DESCRIPTION, "expiring_days": WEBHOOK_EXPIRING_DAYS,
     "enabled": {"type": "boolean", "description": "true re-enables an endpoint that was "
                                                   "disabled after failures."}},
    description="Every field is optional; absent fields stay as they are.")

WEBHOOK_DELIVERY_QUERY = _object(
    {"cursor": {"type": "string", "minLength": 1, "maxLength": 64,
                "description": "next_cursor of the previous page (opaque)."},
     "limit": {"type": "integer", "minimum": 1, "maximum": WEBHOOK_MAX_PAGE_SIZE,
               "default": 50}})

_TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}

WEBHOOK: Schema = {
    "type": "object",
    "required": ["id", "url", "description", "event_types", "expiring_days", "enabled",
                 "disabled_reason", "disabled_at", "consecutive_failures",
                 "previous_secret_expires_at", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string", "pattern": ENDPOINT_ID_PATTERN},
        "url": {"type": "string"}, "description": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "expiring_days": {"type": "array", "items": {"type": "integer"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"],
                            "enum": ["consecutive_failures", "disabled_by_user", None],
                            "description": "consecutive_failures: keymint disabled it after "
                                           "a run of failed attempts (webhook.disabled in "
                                           "the audit trail); PATCH enabled=true resumes."},
        "disabled_at": _TIME_OR_NULL,
        "consecutive_failures": {"type": "integer"},
        "previous_secret_expires_at": {
            **_TIME_OR_NULL, "description": "While set, deliveries are signed with the "
                                            "previous secret too."},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
WEBHOOK_WITH_SECRET: Schema = {
    "allOf": [{"$ref": "#/components/schemas/Webhook"},
              {"type": "object", "required": ["secret"],
               "properties": {"secret": {"type": "string", "pattern": "^whsec_",
                                         "description": "Shown only now."}}}]}
WEBHOOK_LIST: Schema = {
    "type": "object", "required": ["webhooks"],
    "properties": {"webhooks": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Webhook"}}}}
WEBHOOK_DELIVERY: Schema = {
    "type": "object",
    "required": ["id", "webhook_id", "event_id", "event_type", "status", "attempts",
                 "next_attempt_at", "last_attempt_at", "response_status", "duration_ms",
                 "last_error", "retry_until", "created_at", "completed_at"],
    "properties": {
        "id": {"type": "string", "pattern": DELIVERY_ID_PATTERN},
        "webhook_id": {"type": "string"},
        "event_id": {"type": "string", "description": "The webhook-id header: the same on "
                                                      "every attempt."},
        "event_type": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
        "attempts": {"type": "integer"},
        "next_attempt_at": _TIME_OR_NULL, "last_attempt_at": _TIME_OR_NULL,
        "response_status": {"type": ["integer", "null"]},
        "duration_ms": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"],
                       "description": "The last failure, with at most 200 characters of "
                                      "the receiver's answer."},
        "retry_until": {"type": "string", "format": "date-time",
                        "description": "No retry after this: 24 h after the event, or "
                                       "after the last manual retry."},
        "created_at": {"type": "string", "format": "date-time"},
        "completed_at": _TIME_OR_NULL,
    },
}
WEBHOOK_DELIVERY_PAGE: Schema = {
    "type": "object", "required": ["deliveries", "next_cursor"],
    "properties": {"deliveries": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/WebhookDelivery"}},
                   "next_cursor": {"type": ["string", "null"]}}}

COMPONENTS: dict[str, Schema] = {
    "Error": ERROR, "Key": KEY, "KeyWithSecret": KEY_WITH_SECRET, "KeyRotated": KEY_ROTATED,
    "KeyPage": KEY_PAGE, "Token": TOKEN, "TokenList": TOKEN_LIST,
    "TokensRevoked": TOKENS_REVOKED, "Member": MEMBER, "MemberList": MEMBER_LIST,
    "Invitation": INVITATION, "InvitationList": INVITATION_LIST,
    "Workspace": WORKSPACE, "Resource": RESOURCE, "ResourceList": RESOURCE_LIST,
    "KeyCreate": KEY_CREATE, "KeyUpdate": KEY_UPDATE, "KeyRotate": KEY_ROTATE,
    "MemberAdd": MEMBER_ADD, "MemberUpdate": MEMBER_UPDATE, "WorkspaceUpdate": WORKSPACE_UPDATE,
    "Webhook": WEBHOOK, "WebhookWithSecret": WEBHOOK_WITH_SECRET, "WebhookList": WEBHOOK_LIST,
    "WebhookDelivery": WEBHOOK_DELIVERY, "WebhookDeliveryPage": WEBHOOK_DELIVERY_PAGE,
    "WebhookCreate": WEBHOOK_CREATE, "WebhookUpdate": WEBHOOK_UPDATE,
}
