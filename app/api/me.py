"""GET /api/v1/me: who the presented credential is."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api.legacy import accepts_legacy_key, me_legacy
from app.clock import isoformat
from app.oauth.resource import current_info, require_token
from app.services.tokens import TokenInfo
from app.web.rate_limits import legacy_limits

bp = Blueprint("me", __name__, url_prefix="/api/v1")


@bp.get("/me")
@legacy_limits
@accepts_legacy_key(me_legacy)  # X-API-Key without Authorization: the legacy answer
@require_token()
def me() -> Response:
    return jsonify(me_answer(current_info()))


def me_answer(info: TokenInfo) -> dict:
    """Who a Bearer token is (read with the token: its owner's role and its workspace); the
    one definition, for the view and its fast path (app/api/fast_me.py)."""
    return {
        "credential": "access_token",
        "user": {"id": str(info.user_id), "email": info.user_email, "role": info.role},
        "workspace": {"id": str(info.workspace_id), "slug": info.workspace_slug,
                      "name": info.workspace_name},
        "key": {"client_id": info.client_id},
        "scopes": info.scopes,
        "token": {"jti": info.jti, "expires_at": isoformat(info.expires_at)},
    }
