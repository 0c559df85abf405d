"""/api/v1/invitations: a workspace's pending invitations, and the invitee accepting one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api.caller import actor, principal
from app.extensions import db
from app.models import User
from app.oauth.resource import current_info, require_token
from app.serialize import invitation_json
from app.services import access, invitations
from app.web.context import request_actor

bp = Blueprint("invitations", __name__, url_prefix="/api/v1")

READ = "members:read"
WRITE = "members:write"


def _invitee() -> User:
    """The user behind the Bearer token, whichever workspace the token belongs to."""
    return db.session.get_one(User, current_info().user_id)


@bp.get("/invitations")
@require_token(READ)
def list_invitations() -> Response:
    caller = principal()
    access.require_manager(caller, "list invitations")
    pending = invitations.list_pending(db.session, caller.workspace_id)
    return jsonify({"invitations": [invitation_json(i) for i in pending]})


@bp.get("/invitations/<invitation_id>")
@require_token()
def get_invitation(invitation_id: str) -> Response:
    invitation = invitations.get_invitation(db.session, invitation_id)
    access.check_can_see_invitation(principal(), invitation, _invitee())
    return jsonify(invitation_json(invitation))


@bp.delete("/invitations/<invitation_id>")
@require_token(WRITE)
def revoke_invitation(invitation_id: str) -> tuple[str, int]:
    caller = principal()
    invitation = invitations.get_invitation(db.session, invitation_id, lock=True)
    access.check_can_revoke_invitation(caller, invitation)
    invitations.revoke(db.session, invitation, actor())
    return "", 204


@bp.post("/invitations/<invitation_id>/accept")
@require_token()
def accept_invitation(invitation_id: str) -> Response:
    invitation = invitations.get_invitation(db.session, invitation_id, lock=True)
    user = _invitee()
    # No key in the audit event: the token's key belongs to another workspace, and nothing
    # of one workspace shows in another's trail.
    invitations.accept(db.session, invitation, user, request_actor("user", str(user.id), None))
    return jsonify(invitation_json(invitation))
