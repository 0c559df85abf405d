"""/api/v1/workspace: the caller's workspace and its key and token policy."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from app.api import schemas
from app.api.caller import actor, principal
from app.clock import isoformat
from app.extensions import db
from app.models import TokenFormat, Workspace
from app.oauth.resource import require_token
from app.services import access, accounts
from app.web.validation import json_body

bp = Blueprint("workspace", __name__, url_prefix="/api/v1")

# Reading the policy helps anyone who manages keys or members; changing it needs owners.
READ = ["keys:read", "members:read"]
WRITE = "members:write"


def workspace_json(workspace: Workspace) -> dict:
    server_max = current_app.config["KEYMINT_MAX_ACCESS_TOKEN_TTL"]
    jwt = workspace.token_format == TokenFormat.JWT
    effective = accounts.effective_token_ttl(
        workspace.token_ttl_seconds, current_app.config["KEYMINT_ACCESS_TOKEN_TTL"], server_max,
        current_app.config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] if jwt else None)
    return {
        "id": str(workspace.id), "slug": workspace.slug, "name": workspace.name,
        "created_at": isoformat(workspace.created_at),
        "max_key_lifetime_days": workspace.max_key_lifetime_days,
        "default_key_lifetime_days": workspace.default_key_lifetime_days,
        "token_ttl_seconds": workspace.token_ttl_seconds,
        "effective_token_ttl_seconds": effective,
        "max_token_ttl_seconds": server_max,
        "token_format": workspace.token_format,
    }


@bp.get("/workspace")
@require_token(READ)
def get_workspace() -> Response:
    return jsonify(workspace_json(access.caller_workspace(db.session, principal())))


@bp.patch("/workspace")
@require_token(WRITE)
def update_workspace() -> Response:
    caller = principal()
    body = json_body(schemas.WORKSPACE_UPDATE)
    access.require_owner(caller, "change the workspace policy")
    workspace = access.caller_workspace(db.session, caller)
    accounts.update_policy(db.session, workspace, actor(),
                           max_token_ttl=current_app.config["KEYMINT_MAX_ACCESS_TOKEN_TTL"],
                           jwt_available=current_app.config.get(
                               "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY") is not None,
                           **body)
    payload = workspace_json(workspace)
    return jsonify(payload)
