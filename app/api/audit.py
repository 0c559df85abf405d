"""GET /api/v1/audit-events: the workspace's audit trail, newest first, cursor-paginated."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api import schemas
from app.extensions import db
from app.oauth.resource import current_info, require_token
from app.serialize import audit_event_json
from app.services import audit_query
from app.web.validation import query_args, timestamp

bp = Blueprint("audit", __name__, url_prefix="/api/v1")


@bp.get("/audit-events")
@require_token("audit:read")
def list_events() -> Response:
    info = current_info()
    own_keys_of = audit_query.own_keys_limit(db.session, info.user_id, info.workspace_id)
    args = query_args(schemas.AUDIT_EVENT_QUERY)
    where = audit_query.EventFilter(
        workspace_id=info.workspace_id,
        action=args.get("action"),
        actor=args.get("actor"),
        key=args.get("key"),
        since=timestamp(args.get("since"), "since"),
        until=timestamp(args.get("until"), "until"),
        own_keys_of=own_keys_of,
    )
    result = audit_query.page(db.session, where, cursor=args.get("cursor"),
                              limit=args.get("limit", audit_query.DEFAULT_PAGE_SIZE))
    return jsonify({"events": [audit_event_json(row) for row in result.events],
                    "next_cursor": result.next_cursor})
