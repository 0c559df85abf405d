"""GET /api/v1/me: who the presented credential is."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api.legacy import accepts_legacy_key, me_legacy
from app.api.ratelimit import legacy_limits
from app.clock import isoformat
from app.extensions import db
from app.models import Membership, Workspace
from app.oauth.resource import current_info, require_token

bp = Blueprint("me", __name__, url_prefix="/api/v1")


@bp.get("/me")
@legacy_limits
@accepts_legacy_key(me_legacy)  # X-API-Key without Authorization: the legacy answer
@require_token()
def me() -> Response:
    info = current_info()
    workspace = db.session.get(Workspace, info.workspace_id)
    role = db.session.query(Membership.role).filter_by(
        user_id=info.user_id, workspace_id=info.workspace_id).scalar()
    return jsonify({
        "credential": "access_token",
        "user": {"id": str(info.user_id), "email": info.user_email, "role": role},
        "workspace": {"id": str(workspace.id), "slug": workspace.slug, "name": workspace.name},
        "key": {"client_id": info.client_id},
        "scopes": info.scopes,
        "token": {"jti": info.jti, "expires_at": isoformat(info.expires_at)},
    })
