"""GET /api/v1/me: who the presented credential is."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api.legacy import accepts_legacy_key, me_legacy
from app.api.ratelimit import legacy_limits
from app.clock import isoformat
from app.extensions import db
from app.oauth.resource import current_info, require_token
from app.services.accounts import workspace_seat

bp = Blueprint("me", __name__, url_prefix="/api/v1")


@bp.get("/me")
@legacy_limits
@accepts_legacy_key(me_legacy)  # X-API-Key without Authorization: the legacy answer
@require_token()
def me() -> Response:
    info = current_info()
    seat = workspace_seat(db.session, info.workspace_id, info.user_id)
    return jsonify({
        "credential": "access_token",
        "user": {"id": str(info.user_id), "email": info.user_email, "role": seat.role},
        "workspace": {"id": str(seat.workspace_id), "slug": seat.slug, "name": seat.name},
        "key": {"client_id": info.client_id},
        "scopes": info.scopes,
        "token": {"jti": info.jti, "expires_at": isoformat(info.expires_at)},
    })
