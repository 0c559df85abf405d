"""Legacy keys page (admins, owners): usage, the sunset countdown, brownouts, migration state."""

from __future__ import annotations

import math

from flask import abort, current_app, render_template, request
from werkzeug.wrappers import Response

from app.clock import utcnow
from app.console import admin, bp, session
from app.extensions import db
from app.runtime import legacy_usage_buffer
from app.serialize import legacy_state
from app.services import access
from app.services import legacy as legacy_service
from app.services.errors import DomainError, Forbidden

PAGE_SIZE = 100


@bp.get("/w/<slug>/legacy-keys")
@session.signed_in
def legacy_keys(slug: str) -> Response:
    """As GET /api/v1/legacy-keys: this process's pending usage counts are written first."""
    p = admin.page(slug)
    try:
        access.check_can_list_legacy_keys(db.session, p.user_id, p.workspace.id)
    except Forbidden:
        abort(403, description=admin.MANAGERS_ONLY)
    legacy_usage_buffer.of().flush()
    now = utcnow()
    rules = legacy_service.Policy.from_config(current_app.config)
    brownouts = sorted(rules.brownouts + legacy_service.stored_windows(db.session, now))
    errors: dict[str, str] = {}
    status = 200
    keys, next_cursor = [], None
    try:
        found = legacy_service.page_keys(db.session, p.workspace.id,
                                         cursor=request.args.get("cursor") or None,
                                         limit=PAGE_SIZE)
        keys, next_cursor = found.keys, found.next_cursor
    except DomainError as error:
        errors, status = admin.errors_of(error, field="form")
    seconds_left = (rules.sunset - now).total_seconds()
    body = render_template(
        "console/legacy_keys.html", workspace=p.workspace, page=p, keys=keys,
        next_cursor=next_cursor, errors=errors, sunset=rules.sunset, now=now,
        days_left=math.ceil(seconds_left / 86400) if seconds_left > 0 else 0,
        brownouts=[(start, end) for start, end in brownouts
                   if end > now and start < rules.sunset],
        state_of=lambda row: legacy_state(row, rules.sunset),
        guide_url=current_app.config.get("KEYMINT_LEGACY_MIGRATION_URL")
        or "/docs/legacy-migration")
    return admin.html(body, status)
