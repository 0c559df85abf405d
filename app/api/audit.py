"""GET /api/v1/audit-events: the workspace's audit trail, newest first, cursor-paginated."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from app.clock import parse_rfc3339
from app.extensions import db
from app.models import Membership, Role
from app.oauth.resource import current_info, require_token
from app.serialize import audit_event_json
from app.services import audit_query
from app.services.errors import Forbidden, InvalidInput

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
        if data.get("v") != _CURSOR_VERSION or not isinstance(before, int) or before < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidInput("cursor is not a cursor this API returned", field="cursor") from None
    return before


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an RFC 3339 time, e.g. 2030-01-01T00:00:00Z",
                           field=name) from None


def _limit_arg() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return audit_query.DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= audit_query.MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {audit_query.MAX_PAGE_SIZE}",
                           field="limit")
    return int(raw)


def _text_arg(name: str) -> str | None:
    raw = request.args.get(name)
    return raw if raw else None


@bp.get("/audit-events")
@require_token("audit:read")
def list_events() -> Response:
    info = current_info()
    # The role is read now, not from the token: a demotion takes effect on the next call.
    role = db.session.scalar(select(Membership.role).where(
        Membership.user_id == info.user_id, Membership.workspace_id == info.workspace_id))
    if role is None:
        raise Forbidden("not a member of this workspace")
    where = audit_query.EventFilter(
        workspace_id=info.workspace_id,
        action=_text_arg("action"),
        actor=_text_arg("actor"),
        key=_text_arg("key"),
        since=_time_arg("since"),
        until=_time_arg("until"),
        own_keys_of=None if Role(role).manages_workspace else info.user_id,
    )
    cursor = request.args.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    result = audit_query.page(db.session, where, before=before, limit=_limit_arg())
    return jsonify({
        "events": [audit_event_json(row) for row in result.events],
        "next_cursor": encode_cursor(result.next_before) if result.next_before else None,
    })
