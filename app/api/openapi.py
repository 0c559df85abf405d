"""GET /openapi.json: the OpenAPI 3.1 document of every route of the server.

Request bodies and query parameters of the management API are the very schema objects the
validator checks (app/api/schemas.py). tests/test_openapi.py fails when a route exists that
this document does not describe, or the other way round.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Response, jsonify

from app.api import schemas
from app.services.keys import INTROSPECT_SCOPE, MANAGEMENT_SCOPES
from app.services.webhooks import DELIVERY_ID_PATTERN, ENDPOINT_ID_PATTERN

bp = Blueprint("openapi", __name__)

Doc = dict[str, Any]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Doc) -> Doc:
    return {JSON: {"schema": schema}}


def error(description: str, *, challenge: bool = False) -> Doc:
    response: Doc = {"description": description, "content": json_content(ref("Error"))}
    if challenge:
        response["headers"] = {"WWW-Authenticate": {
            "description": "The authentication challenge (RFC 6750 §3 or RFC 7617).",
            "schema": {"type": "string"}}}
    return response


UNAVAILABLE = error("The database is unreachable; nothing was changed. Retry after "
                    "`Retry-After` seconds.")
BEARER_ERRORS = {
    "401": error("Missing, malformed, expired or revoked Bearer token "
                 "(`WWW-Authenticate: Bearer`).", challenge=True),
    "403": error("The token lacks the route's scope (`insufficient_scope`), or the caller's "
                 "role does not allow the action (`forbidden`).", challenge=True),
    "503": UNAVAILABLE,
}
JSON_BODY_ERRORS = {
    "400": error("Invalid JSON, not an object, unknown field, wrong type or a rule broken; "
                 "`field` names the culprit."),
    "413": error("The body is larger than 64 KiB."),
    "415": error("The body is not JSON."),
}


def bearer(*scopes: str) -> list[Doc]:
    # OpenAPI 3.1 lets a non-OAuth2 scheme list the roles/scopes it needs; any one suffices.
    return [{"bearerAuth": [scope]} for scope in scopes]


def management(summary: str, scopes: tuple[str, ...], responses: Doc, *,
               description: str = "", body: Doc | None = None,
               body_required: bool = True, query: Doc | None = None,
               path_param: Doc | None = None) -> Doc:
    operation: Doc = {"summary": summary, "security": bearer(*scopes),
                      "responses": {**responses, **BEARER_ERRORS}}
    needs = " or ".join(f"`{s}`" for s in scopes)
    operation["description"] = (description + "\n\n" if description else "") + \
        f"Needs a Bearer token with {needs}."
    parameters = []
    if path_param is not None:
        parameters.append(path_param)
    if query is not None:
        for name, schema in query["properties"].items():
            parameters.append({"name": name, "in": "query", "required": False,
                               "schema": schema,
                               **({"description": schema["description"]}
                                  if "description" in schema else {})})
    if parameters:
        operation["parameters"] = parameters
    if query is not None or body is not None:
        operation["responses"] = {**JSON_BODY_ERRORS, **operation["responses"]}
        if body is None:
            for code in ("413", "415"):
                operation["responses"].pop(code)
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": json_content(body)}
    return operation


def resource_read(summary: str, responses: Doc, **kwargs: Any) -> Doc:
    """A resources route: a `keys:read` Bearer token, or a resource server's own key's HTTP
    Basic client credentials (its `introspects_for` resource only)."""
    operation = management(summary, ("keys:read",), responses, **kwargs)
    operation["security"] = [*operation["security"], {"clientSecretBasic": []}]
    operation["description"] += (
        " Or HTTP Basic client credentials (as at /oauth/introspect) of a key with "
        "`introspects_for`: it reads that resource only. Failed client authentication is "
        "`401 invalid_client` (`WWW-Authenticate: Basic`), audited and rate limited as at "
        "the OAuth endpoints; a key without `introspects_for` gets `403 forbidden`.")
    operation["responses"]["401"] = error(
        "Missing, malformed, expired or revoked Bearer token (`WWW-Authenticate: Bearer`), "
        "or failed client authentication (`invalid_client`, `WWW-Authenticate: Basic`).",
        challenge=True)
    operation["responses"]["429"] = error(
        "Client credentials over a rate limit; retry after `Retry-After` seconds.")
    return operation


CLIENT_ID_PARAM: Doc = {"name": "client_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^key_[0-9A-Za-z]{24}$"},
                        "description": "The key's public id (its OAuth client_id)."}
USER_ID_PARAM: Doc = {"name": "user_id", "in": "path", "required": True,
                      "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
KEY_NOT_FOUND = error("No such key in the caller's workspace, or (for members) not one of "
                      "their own keys.")
RESOURCE_ID_PARAM: Doc = {"name": "id", "in": "path", "required": True,
                          "schema": {"type": "string", "pattern": "^(keymint|[0-9]{1,18})$"},
                          "description": "A resource's id (`keymint`: keymint's own API)."}
MEMBER_NOT_FOUND = error("No such member in the caller's workspace.")
INVITATION_ID_PARAM: Doc = {"name": "invitation_id", "in": "path", "required": True,
                            "schema": {"type": "string",
                                       "pattern": schemas.INVITATION_ID_PATTERN}}
INVITATION_NOT_FOUND = error("No such invitation, or not one the caller may see (another "
                             "workspace's, or addressed to someone else).")


def invitee_operation(summary: str, responses: Doc, description: str) -> Doc:
    """An invitation route open to any Bearer token: who may act is decided by the token's
    user (the invitee), not by a scope."""
    return {"summary": summary, "security": [{"bearerAuth": []}],
            "description": description + "\n\nNeeds any valid Bearer token.",
            "parameters": [INVITATION_ID_PARAM],
            "responses": {**responses, "401": BEARER_ERRORS["401"],
                          "403": error("The caller's user is disabled."),
                          "503": UNAVAILABLE}}


def _oauth_form(properties: Doc, required: tuple[str, ...]) -> Doc:
    client = {"client_id": {"type": "string",
                            "description": "client_secret_post; else use HTTP Basic."},
              "client_secret": {"type": "string"}}
    return {"required": True, "content": {FORM: {"schema": {
        "type": "object", "properties": {**properties, **client},
        "required": list(required)}}}}


OAUTH_ERRORS = {
    "400": error("RFC 6749 §5.2 error: invalid_request, invalid_scope, invalid_grant, "
                 "unsupported_grant_type, invalid_target (RFC 8707) ..."),
    "401": error("invalid_client: client authentication failed "
                 "(`WWW-Authenticate: Basic realm=\"keymint\"`).", challenge=True),
    "503": UNAVAILABLE,
}
CLIENT_AUTH = [{"clientSecretBasic": []}, {}]  # {}: client_secret_post in the form body

TOKEN_RESPONSE: Doc = {
    "type": "object", "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {"access_token": {"type": "string"},
                   "token_type": {"type": "string", "enum": ["Bearer"]},
                   "expires_in": {"type": "integer", "minimum": 0},
                   "scope": {"type": "string"}}}

INTROSPECTION: Doc = {
    "type": "object", "required": ["active"],
    "description": "RFC 7662. Anything not active for the caller is exactly "
                   "{\"active\": false}.",
    "properties": {
        "active": {"type": "boolean"}, "scope": {"type": "string"},
        "client_id": {"type": "string"}, "sub": {"type": "string"},
        "username": {"type": "string"}, "token_type": {"type": "string"},
        "exp": {"type": "integer"}, "iat": {"type": "integer"}, "jti": {"type": "string"},
        "iss": {"type": "string"}, "workspace_id": {"type": "string"},
        "aud": {"type": "array", "items": {"type": "string"},
                "description": "The resources the token is for (RFC 8707); absent for tokens "
                               "minted before resources existed."},
        "allowed": {"type": "boolean",
                    "description": "With `method` and `path`: may the token call that route "
                                   "of the caller's resource."},
        "missing_scope": {"type": "string",
                          "description": "When `allowed` is false for want of a scope: the "
                                         "scopes (space-separated) any one of which would "
                                         "allow it."},
        "deprecated": {"type": "boolean", "description": "Legacy keys only."},
        "sunset_at": {"type": "string", "description": "Legacy keys only."}}}

METADATA: Doc = {
    "type": "object",
    "required": ["issuer", "token_endpoint", "introspection_endpoint", "revocation_endpoint",
                 "grant_types_supported", "token_endpoint_auth_methods_supported",
                 "scopes_supported"],
    "properties": {name: {"type": "string"} for name in (
        "issuer", "token_endpoint", "introspection_endpoint", "revocation_endpoint",
        "jwks_uri", "service_documentation")} | {
        name: {"type": "array", "items": {"type": "string"}} for name in (
            "grant_types_supported",
            "token_endpoint_auth_methods_supported",
            "introspection_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported", "scopes_supported")}}

JWKS: Doc = {
    "type": "object", "required": ["keys"],
    "description": "RFC 7517 JWK Set: the public keys of JWT access tokens (docs/jwt.md).",
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "kid", "alg", "use"],
        "properties": {"kty": {"type": "string", "enum": ["EC", "OKP"]},
                       "kid": {"type": "string"},
                       "alg": {"type": "string", "enum": ["ES256", "EdDSA"]},
                       "use": {"type": "string", "enum": ["sig"]},
                       "crv": {"type": "string"}, "x": {"type": "string"},
                       "y": {"type": "string"}}}}}}

ME: Doc = {
    "type": "object", "required": ["credential", "user", "workspace", "scopes"],
    "properties": {
        "credential": {"type": "string", "enum": ["access_token", "legacy_api_key"]},
        "user": {"type": ["object", "null"]}, "workspace": {"type": "object"},
        "key": {"type": ["object", "null"]},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "token": {"type": ["object", "null"]}}}

HEALTH: Doc = {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"},
                              "database": {"type": "string"}}}

LEGACY_KEY: Doc = {
    "type": "object",
    "description": "Metadata of one imported legacy key (label, usage counters, last use, "
                   "migration state); never the key itself."}

AUDIT_EVENT: Doc = {
    "type": "object",
    "description": "One audit event: when, action, actor (type, id, key), target, ip, "
                   "request id, details."}

def _paths() -> Doc:
    k = schemas
    return {
        "/.well-known/oauth-authorization-server": {"get": {
            "tags": ["oauth"], "summary": "RFC 8414 authorization server metadata",
            "security": [],
            "responses": {"200": {"description": "Metadata.", "content": json_content(METADATA)}}}},
        "/.well-known/jwks.json": {"get": {
            "tags": ["oauth"], "summary": "Public keys of JWT access tokens (JWKS)",
            "description": "A new key is listed here at least `max-age` before it signs; a "
                           "retired one until every token it signed has expired.",
            "security": [],
            "responses": {"200": {"description": "The JWK Set.",
                                  "content": json_content(JWKS)}}}},
        "/oauth/token": {"post": {
            "tags": ["oauth"], "summary": "Mint an access token (client_credentials grant)",
            "description": "RFC 6749 §4.4. `scope` must be a subset of the key's scopes "
                           "(default: all of them). No refresh token. `resource` (RFC 8707, "
                           "repeatable) names the resources the token is for: its audience, "
                           "and its scopes are limited to the ones they define (default: "
                           "every held scope they define). Without `resource` the audience is "
                           "every resource the key may use. An unknown, malformed or "
                           "disallowed resource is 400 `invalid_target`; a scope no named "
                           "resource defines is 400 `invalid_scope`.",
            "security": CLIENT_AUTH,
            "requestBody": _oauth_form({
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "scope": {"type": "string", "description": "Space-separated."},
                "resource": {"type": "array", "items": {"type": "string"},
                             "description": "Absolute URI of a registered resource; send the "
                                            "parameter once per resource.",
                             "examples": [["https://orders.example.com"]]}},
                ("grant_type",)),
            "responses": {"200": {"description": "A new access token.",
                                  "content": json_content(TOKEN_RESPONSE)}, **OAUTH_ERRORS}}},
        "/oauth/introspect": {"post": {
            "tags": ["oauth"], "summary": "Token introspection (RFC 7662)",
            "description": f"The caller's key needs the `{INTROSPECT_SCOPE}` scope. A key "
                           "with `introspects_for` (a resource server's key) sees only tokens "
                           "whose audience includes its resource; any other is "
                           "{\"active\": false}. Such a key may also send `method` and `path` "
                           "(both): the answer for an active token then adds `allowed` from "
                           "the resource's route policy, and `missing_scope` when denied for "
                           "want of a scope.",
            "security": CLIENT_AUTH,
            "requestBody": _oauth_form({"token": {"type": "string"},
                                        "token_type_hint": {"type": "string"},
                                        "method": {"type": "string",
                                                   "examples": ["GET"]},
                                        "path": {"type": "string",
                                                 "examples": ["/v1/orders/42"]}},
                                       ("token",)),
            "responses": {"200": {"description": "The token's state.",
                                  "content": json_content(INTROSPECTION)},
                          "403": error("The key lacks the introspect scope."),
                          **OAUTH_ERRORS}}},
        "/oauth/revoke": {"post": {
            "tags": ["oauth"], "summary": "Token revocation (RFC 7009)",
            "description": "Unknown, already revoked or foreign tokens answer 200 and "
                           "nothing changes.",
            "security": CLIENT_AUTH,
            "requestBody": _oauth_form({"token": {"type": "string"},
                                        "token_type_hint": {"type": "string"}}, ("token",)),
            "responses": {"200": {"description": "Revoked (or nothing to do).",
                                  "content": json_content({"type": "object"})},
                          **OAUTH_ERRORS}}},
        "/oauth/rotate": {"post": {
            "tags": ["oauth"], "summary": "Rotate an access token",
            "description": "Revokes `token` and issues its replacement atomically. A token "
                           "presented again after rotation revokes its whole lineage "
                           "(400 invalid_grant).",
            "security": CLIENT_AUTH,
            "requestBody": _oauth_form({"token": {"type": "string"},
                                        "scope": {"type": "string"}}, ("token",)),
            "responses": {"200": {"description": "The replacement token.",
                                  "content": json_content(TOKEN_RESPONSE)}, **OAUTH_ERRORS}}},
        "/api/v1/me": {"get": {
            "tags": ["management"], "summary": "Who the presented credential is",
            "description": "Any valid Bearer token; also a legacy key in `X-API-Key` until "
                           "the sunset date.",
            "security": [{"bearerAuth": []}, {"legacyApiKey": []}],
            "responses": {"200": {"description": "The caller.", "content": json_content(ME)},
                          "401": BEARER_ERRORS["401"], "503": UNAVAILABLE}}},
        "/api/v1/keys": {
            "get": {"tags": ["keys"], **management(
                "List keys", ("keys:read",),
                {"200": {"description": "One page, newest first.",
                         "content": json_content(ref("KeyPage"))}},
                description="Members see their own keys; admins and owners every key of "
                            "the workspace.", query=k.KEY_LIST_QUERY)},
            "post": {"tags": ["keys"], **management(
                "Create a key for the caller", ("keys:write",),
                {"201": {"description": "Created; `client_secret` is shown only now.",
                         "headers": {"Location": {"required": True,
                                                  "schema": {"type": "string"}}},
                         "content": json_content(ref("KeyWithSecret"))}},
                body=ref("KeyCreate"))}},
        "/api/v1/keys/{client_id}": {
            "get": {"tags": ["keys"], **management(
                "Read a key", ("keys:read",),
                {"200": {"description": "The key.", "content": json_content(ref("Key"))},
                 "404": KEY_NOT_FOUND}, path_param=CLIENT_ID_PARAM)},
            "patch": {"tags": ["keys"], **management(
                "Rename, narrow scopes or change the expiry", ("keys:write",),
                {"200": {"description": "The changed key.",
                         "content": json_content(ref("Key"))},
                 "404": KEY_NOT_FOUND,
                 "409": error("The key is revoked, or expired and an expiry change was "
                              "asked.")},
                body=ref("KeyUpdate"), path_param=CLIENT_ID_PARAM)},
            "delete": {"tags": ["keys"], **management(
                "Revoke a key", ("keys:write",),
                {"204": {"description": "Revoked with all its secrets and tokens, at once. "
                                        "The key stays readable with `revoked_at` set."},
                 "404": KEY_NOT_FOUND}, path_param=CLIENT_ID_PARAM)}},
        "/api/v1/keys/{client_id}/rotate": {"post": {"tags": ["keys"], **management(
            "Rotate the key's secret", ("keys:write",),
            {"200": {"description": "The new secret, shown only now.",
                     "content": json_content(ref("KeyRotated"))},
             "404": KEY_NOT_FOUND, "409": error("The key is revoked or expired.")},
            description="The previous secret keeps working for `grace_period` seconds "
                        "(never past the key's expiry); a rotation during a grace period "
                        "ends the older secret now.",
            body=ref("KeyRotate"), body_required=False, path_param=CLIENT_ID_PARAM)}},
        "/api/v1/keys/{client_id}/tokens": {
            "get": {"tags": ["keys"], **management(
                "List the key's active tokens (metadata only)", ("keys:read",),
                {"200": {"description": "Active tokens, newest first.",
                         "content": json_content(ref("TokenList"))},
                 "404": KEY_NOT_FOUND}, path_param=CLIENT_ID_PARAM)},
            "delete": {"tags": ["keys"], **management(
                "Revoke every token of the key; the key stays", ("keys:write",),
                {"200": {"description": "How many tokens were revoked.",
                         "content": json_content(ref("TokensRevoked"))},
                 "404": KEY_NOT_FOUND}, path_param=CLIENT_ID_PARAM)}},
        "/api/v1/resources": {"get": {"tags": ["resources"], **resource_read(
            "The registered resources (RFC 8707) with their route policies",
            {"200": {"description": "keymint's own API (id `keymint`) first, then every "
                                    "registered resource by URI. With a resource server's "
                                    "client credentials: its own resource only.",
                     "content": json_content(ref("ResourceList"))}},
            description="Resources are registered by the operator (`keymint resources "
                        "create`); a resource server may read its route policy here to "
                        "decide locally.")}},
        "/api/v1/resources/{id}": {"get": {"tags": ["resources"], **resource_read(
            "Read one resource and its route policy",
            {"200": {"description": "The resource.", "content": json_content(ref("Resource"))},
             "404": error("No such resource, or (with a resource server's client "
                          "credentials) not the caller's own resource.")},
            path_param=RESOURCE_ID_PARAM)}},
        "/api/v1/members": {
            "get": {"tags": ["members"], **management(
                "List the workspace's members", ("members:read",),
                {"200": {"description": "Members.", "content": json_content(ref("MemberList"))}})},
            "post": {"tags": ["members"], **management(
                "Invite an email address", ("members:write",),
                {"202": {"description": "A pending invitation, whatever the email: the "
                                        "answer never says whether it has an account.",
                         "headers": {"Location": {"required": True,
                                                  "schema": {"type": "string"}}},
                         "content": json_content(ref("Invitation"))},
                 "409": error("Already a member of this workspace, or a pending invitation "
                              "for that email exists.")},
                description="The person becomes a member once their own user accepts "
                            "(POST /api/v1/invitations/{invitation_id}/accept) within 7 "
                            "days. Admins invite members; only owners invite admins or "
                            "owners.",
                body=ref("MemberAdd"))}},
        "/api/v1/invitations": {"get": {"tags": ["members"], **management(
            "Pending invitations of the workspace (admins and owners)", ("members:read",),
            {"200": {"description": "Pending, unexpired invitations, oldest first.",
                     "content": json_content(ref("InvitationList"))}})}},
        "/api/v1/invitations/{invitation_id}": {
            "get": {"tags": ["members"], **invitee_operation(
                "Read an invitation",
                {"200": {"description": "The invitation.",
                         "content": json_content(ref("Invitation"))},
                 "404": INVITATION_NOT_FOUND},
                "The invitee reads it with a token of their own from any workspace; admins "
                "and owners of its workspace read it with a `members:read` token.")},
            "delete": {"tags": ["members"], **management(
                "Revoke an invitation", ("members:write",),
                {"204": {"description": "Revoked (repeating it is a no-op)."},
                 "404": INVITATION_NOT_FOUND,
                 "409": error("Already accepted: remove the member instead.")},
                description="Admins revoke invitations for the member role; owners any.",
                path_param=INVITATION_ID_PARAM)}},
        "/api/v1/invitations/{invitation_id}/accept": {"post": {
            "tags": ["members"], **invitee_operation(
                "Accept an invitation (the invitee)",
                {"200": {"description": "Accepted: the caller is now a member with the "
                                        "invited role.",
                         "content": json_content(ref("Invitation"))},
                 "404": INVITATION_NOT_FOUND,
                 "409": error("Already accepted, or the caller is already a member."),
                 "410": error("`gone`: the invitation expired or was revoked.")},
                "With a Bearer token of the invited user's own, from any workspace: the "
                "token's user must be the invited email's user, and active.")}},
        "/api/v1/members/{user_id}": {
            "patch": {"tags": ["members"], **management(
                "Change a member's role (owners)", ("members:write",),
                {"200": {"description": "The member.", "content": json_content(ref("Member"))},
                 "404": MEMBER_NOT_FOUND,
                 "409": error("The last owner cannot be demoted.")},
                body=ref("MemberUpdate"), path_param=USER_ID_PARAM)},
            "delete": {"tags": ["members"], **management(
                "Remove a member; their keys here stop working at once", ("members:write",),
                {"204": {"description": "Removed."}, "404": MEMBER_NOT_FOUND,
                 "409": error("The last owner cannot be removed.")},
                description="Anyone may leave; admins remove members; only owners remove "
                            "admins and owners.", path_param=USER_ID_PARAM)}},
        "/api/v1/workspace": {
            "get": {"tags": ["workspace"], **management(
                "The workspace and its policy", ("keys:read", "members:read"),
                {"200": {"description": "The workspace.",
                         "content": json_content(ref("Workspace"))}})},
            "patch": {"tags": ["workspace"], **management(
                "Change the policy (owners)", ("members:write",),
                {"200": {"description": "The workspace.",
                         "content": json_content(ref("Workspace"))}},
                description="Policy applies to keys created or changed from now on.",
                body=ref("WorkspaceUpdate"))}},
        "/api/v1/legacy-keys": {"get": {"tags": ["legacy"], **management(
            "Legacy keys of the workspace with usage and migration state (admins)",
            ("keys:read",),
            {"200": {"description": "Legacy keys (metadata only).",
                     "content": json_content({"type": "object", "properties": {
                         "legacy_keys": {"type": "array", "items": LEGACY_KEY},
                         "next_cursor": {"type": ["string", "null"]}}})}},
            query=k.LEGACY_KEY_LIST_QUERY)}},
        "/api/v1/audit-events": {"get": {"tags": ["audit"], **management(
            "The workspace's audit trail, newest first", ("audit:read",),
            {"200": {"description": "One page of events.",
                     "content": json_content({"type": "object", "properties": {
                         "events": {"type": "array", "items": AUDIT_EVENT},
                         "next_cursor": {"type": ["string", "null"]}}})}},
            query=k.AUDIT_EVENT_QUERY)}},
        **_webhook_paths(),
        "/healthz": {"get": {"tags": ["ops"], "summary": "Liveness", "security": [],
                             "responses": {"200": {"description": "The process serves.",
                                                   "content": json_content(HEALTH)}}}},
        "/readyz": {"get": {"tags": ["ops"], "summary": "Readiness (database reachable)",
                            "security": [],
                            "responses": {"200": {"description": "Ready.",
                                                  "content": json_content(HEALTH)},
                                          "503": {"description": "Database unreachable.",
                                                  "content": json_content(HEALTH)}}}},
        "/docs/legacy-migration": {"get": {
            "tags": ["legacy"], "summary": "Migration guide for legacy API key users",
            "description": "The default target of the Link: rel=\"deprecation\" header.",
            "security": [],
            "responses": {"200": {"description": "The guide, in Markdown.",
                                  "content": {"text/markdown": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {"tags": ["ops"], "summary": "Prometheus metrics", "security": [],
                             "description": "Open unless KEYMINT_METRICS_TOKEN is set; then "
                                            "`Authorization: Bearer <that token>` is required.",
                             "responses": {"200": {"description": "Text exposition format.",
                                                   "content": {"text/plain": {"schema": {
                                                       "type": "string"}}}},
                                           "401": error("KEYMINT_METRICS_TOKEN is set and the "
                                                        "request did not send it as a Bearer "
                                                        "token (`WWW-Authenticate: Bearer "
                                                        "realm=\"keymint-metrics\"`).",
                                                        challenge=True)}}},
        "/openapi.json": {"get": {"tags": ["ops"], "summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1.",
                                                        "content": json_content(
                                                            {"type": "object"})}}}},
    }


WEBHOOK_ID_PARAM: Doc = {"name": "webhook_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": ENDPOINT_ID_PATTERN}}
DELIVERY_ID_PARAM: Doc = {"name": "delivery_id", "in": "path", "required": True,
                          "schema": {"type": "string", "pattern": DELIVERY_ID_PATTERN}}
WEBHOOK_NOT_FOUND = error("No such webhook endpoint in the caller's workspace.")
WEBHOOK_ROLES = "Admins and owners only (403 `forbidden` for members)."


def _webhook(summary: str, scope: str, responses: Doc, *, description: str = "",
             params: tuple[Doc, ...] = (WEBHOOK_ID_PARAM,), **kwargs: Any) -> Doc:
    operation = {"tags": ["webhooks"], **management(
        summary, (scope,), {**responses, **({"404": WEBHOOK_NOT_FOUND} if params else {})},
        description=(description + " " if description else "") + WEBHOOK_ROLES, **kwargs)}
    if params:
        operation["parameters"] = [*params, *operation.get("parameters", [])]
    return operation


def _webhook_paths() -> Doc:
    k = schemas
    delivery = {"description": "The delivery, due now.",
                "content": json_content(ref("WebhookDelivery"))}
    return {
        "/api/v1/webhooks": {
            "get": _webhook("List webhook endpoints", "webhooks:read",
                            {"200": {"description": "Every endpoint of the workspace.",
                                     "content": json_content(ref("WebhookList"))}},
                            params=()),
            "post": _webhook(
                "Create a webhook endpoint", "webhooks:write",
                {"201": {"description": "Created; `secret` is shown only now.",
                         "headers": {"Location": {"required": True,
                                                  "schema": {"type": "string"}}},
                         "content": json_content(ref("WebhookWithSecret"))}},
                description="Events are signed per Standard Webhooks (`webhook-id`, "
                            "`webhook-timestamp`, `webhook-signature`).",
                params=(), body=ref("WebhookCreate"))},
        "/api/v1/webhooks/{webhook_id}": {
            "get": _webhook("Read a webhook endpoint", "webhooks:read",
                            {"200": {"description": "The endpoint (never its secret).",
                                     "content": json_content(ref("Webhook"))}}),
            "patch": _webhook("Change a webhook endpoint; enabled=true resumes it",
                              "webhooks:write",
                              {"200": {"description": "The changed endpoint.",
                                       "content": json_content(ref("Webhook"))}},
                              body=ref("WebhookUpdate")),
            "delete": _webhook("Delete a webhook endpoint and its deliveries", "webhooks:write",
                               {"204": {"description": "Deleted; nothing more is sent."}})},
        "/api/v1/webhooks/{webhook_id}/rotate-secret": {"post": _webhook(
            "Rotate the signing secret", "webhooks:write",
            {"200": {"description": "The new secret, shown only now.",
                     "content": json_content(ref("WebhookWithSecret"))}},
            description="The previous secret also signs every delivery for 24 hours "
                        "(`webhook-signature` carries both).")},
        "/api/v1/webhooks/{webhook_id}/test": {"post": _webhook(
            "Queue a webhook.test event for this endpoint", "webhooks:write",
            {"202": {"description": "Queued; the worker posts it.",
                     "content": json_content(ref("WebhookDelivery"))}})},
        "/api/v1/webhooks/{webhook_id}/deliveries": {"get": _webhook(
            "The endpoint's deliveries, newest first", "webhooks:read",
            {"200": {"description": "One page.",
                     "content": json_content(ref("WebhookDeliveryPage"))}},
            query=k.WEBHOOK_DELIVERY_QUERY)},
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry": {"post": _webhook(
            "Send a delivery again now", "webhooks:write", {"202": delivery},
            description="With a fresh 24 h retry window; the same `webhook-id`.",
            params=(WEBHOOK_ID_PARAM, DELIVERY_ID_PARAM))},
    }


def build_document() -> Doc:
    """A fresh copy each call, so no caller can alter the schemas the validator uses."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "keymint", "version": "1",
                 "description": "Self-hosted OAuth 2.0 token server for API keys. The "
                                "management API (/api/v1) takes Bearer tokens from "
                                "/oauth/token; the token's workspace is the context."},
        "tags": [{"name": name} for name in (
            "oauth", "management", "keys", "resources", "members", "workspace", "webhooks",
            "legacy", "audit", "ops")],
        "paths": _paths(),
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "An access token from POST /oauth/token. "
                                              "Scopes: " + ", ".join(
                                                  sorted(MANAGEMENT_SCOPES)) + "."},
                "clientSecretBasic": {"type": "http", "scheme": "basic",
                                      "description": "client_id:client_secret of a key."},
                "legacyApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                 "description": "Deprecated static key, until its sunset."},
            },
        },
    })


@bp.get("/openapi.json")
def openapi_document() -> Response:
    response = jsonify(build_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
