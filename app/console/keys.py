"""Key pages: My keys, create (secret shown once), detail, rotate, revoke, tokens."""

from __future__ import annotations

from flask import abort, render_template, request

from app.clock import utcnow
from app.console import bp, session
from app.extensions import db
from app.services import keys as key_service

STATES = ("active", "expired", "revoked", "all")


@bp.get("/w/<slug>/keys")
@session.signed_in
def keys(slug: str) -> str:
    workspace, role = session.workspace_context(slug)
    user = session.current()
    assert user is not None
    state = request.args.get("state", "active")
    if state not in STATES:
        abort(400, description="state must be one of active, expired, revoked, all")
    owner = None if role.manages_workspace else user.user_id
    rows = key_service.list_keys(db.session, workspace_id=workspace.id, user_id=owner,
                                 state=None if state == "all" else state)
    return render_template("console/keys.html", workspace=workspace, role=role, keys=rows,
                           state=state, states=STATES, now=utcnow(),
                           show_owner=role.manages_workspace)
