"""Audit log page: the workspace's events, newest first, with the API's filters and cursor;
admins and owners see everything, members the events about their own keys."""

from __future__ import annotations

import re
from datetime import datetime

from flask import render_template, request
from werkzeug.wrappers import Response

from app.clock import parse_rfc3339
from app.console import admin, bp, session
from app.extensions import db
from app.serialize import audit_event_json
from app.services import accounts, audit_query
from app.services.errors import DomainError, InvalidInput

FILTERS = ("action", "actor", "key", "since", "until")
PAGE_SIZE = audit_query.DEFAULT_PAGE_SIZE
# What a browser's datetime-local field sends: no offset; the page says the times are UTC.
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def _instant(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    if _LOCAL.match(value):
        value += ("" if value.count(":") == 2 else ":00") + "Z"
    try:
        return parse_rfc3339(value)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{name} must be a date and time like 2030-01-31T09:00 (UTC) or "
                           "an RFC 3339 instant", field=name) from None


@bp.get("/w/<slug>/audit")
@session.signed_in
def audit(slug: str) -> Response:
    p = admin.page(slug)
    values = {name: request.args.get(name, "").strip() for name in FILTERS}
    cursor = request.args.get("cursor") or None
    errors: dict[str, str] = {}
    status = 200
    events: list[dict] = []
    next_cursor = None
    try:
        where = audit_query.EventFilter(
            workspace_id=p.workspace.id, action=values["action"] or None,
            actor=values["actor"] or None, key=values["key"] or None,
            since=_instant(values["since"], "since"), until=_instant(values["until"], "until"),
            own_keys_of=audit_query.own_keys_limit(db.session, p.user_id, p.workspace.id))
        result = audit_query.page(db.session, where, cursor=cursor, limit=PAGE_SIZE)
        events = [audit_event_json(row) for row in result.events]
        next_cursor = result.next_cursor
    except DomainError as error:
        errors, status = admin.errors_of(error, field=None if error.field in FILTERS
                                         else "form")
    next_args = {name: value for name, value in values.items() if value}
    # Ids are what the trail (and the actor filter) holds; members' emails make them readable.
    people = {str(m.user_id): m.user.email
              for m in accounts.list_members(db.session, p.workspace.id)}
    body = render_template("console/audit.html", workspace=p.workspace, page=p, events=events,
                           values=values, errors=errors, next_cursor=next_cursor,
                           next_args=next_args, first_page=cursor is None,
                           people=people)
    return admin.html(body, status)
