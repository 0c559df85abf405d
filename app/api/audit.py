"""GET /api/v1/audit-events: the workspace's audit trail, newest first, cursor-paginated."""

from __future__ import annotations

import base64
import binascii
import json

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from app.api import schemas
from app.extensions import db
from app.models import Membership, Role
from app.oauth.resource import current_info, require_token
from app.serialize import audit_event_json
from app.services import audit_query
from app.services.errors import Forbidden, InvalidInput
from app.web.validation import query_args, timestamp

bp = Blueprint("audit", __name__, url_prefix="/api/v1")

_CURSOR_VERSION = 1


def encode_cursor(before: int) -> str:
    raw = json.dumps({"v": _CURSOR_VERSION, "before": before}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a page continues below; anything unreadable is a 400 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        before = data["before"]
        if (data.get("v") != _CURSOR_VERSION or type(before) is not int
                or not 1 <= before < 2**63):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidInput("cursor is not a cursor this API returned", field="cursor") from None
    return before


@bp.get("/audit-events")
@require_token("audit:read")
def list_events() -> Response:
    info = current_info()
    # The role is read now, not from the token: a demotion takes effect on the next call.
    role = db.session.scalar(select(Membership.role).where(
        Membership.user_id == info.user_id, Membership.workspace_id == info.workspace_id))
    if role is None:
        raise Forbidden("not a member of this workspace")
    args = query_args(schemas.AUDIT_EVENT_QUERY)
    where = audit_query.EventFilter(
        workspace_id=info.workspace_id,
        action=args.get("action"),
        actor=args.get("actor"),
        key=args.get("key"),
        since=timestamp(args.get("since"), "since"),
        until=timestamp(args.get("until"), "until"),
        own_keys_of=None if Role(role).manages_workspace else info.user_id,
    )
    cursor = args.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    limit = args.get("limit", audit_query.DEFAULT_PAGE_SIZE)
    result = audit_query.page(db.session, where, before=before, limit=limit)
    return jsonify({
        "events": [audit_event_json(row) for row in result.events],
        "next_cursor": encode_cursor(result.next_before) if result.next_before else None,
    })
