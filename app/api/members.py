"""/api/v1/members: who belongs to the caller's workspace, with which role."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api import schemas
from app.api.caller import actor, principal
from app.clock import isoformat
from app.extensions import db
from app.models import Membership
from app.oauth.resource import require_token
from app.serialize import invitation_json
from app.services import access, accounts, invitations
from app.web.validation import json_body

bp = Blueprint("members", __name__, url_prefix="/api/v1")

READ = "members:read"
WRITE = "members:write"


def member_json(membership: Membership) -> dict:
    return {"user_id": str(membership.user_id), "email": membership.user.email,
            "role": membership.role, "status": membership.user.status,
            "joined_at": isoformat(membership.created_at)}


@bp.get("/members")
@require_token(READ)
def list_members() -> Response:
    members = accounts.list_members(db.session, principal().workspace_id)
    return jsonify({"members": [member_json(m) for m in members]})


@bp.post("/members")
@require_token(WRITE)
def add_member() -> tuple[Response, int, dict[str, str]]:
    """Invites: the same 202 whatever the email, a member only once they accept."""
    caller = principal()
    body = json_body(schemas.MEMBER_ADD)
    role = accounts.parse_role(body.get("role", "member"))
    access.check_can_add(caller, role)
    invitation = invitations.invite(db.session, access.caller_workspace(db.session, caller),
                                    body["email"], role.value, actor(),
                                    invited_by=caller.user_id)
    payload = invitation_json(invitation)
    return jsonify(payload), 202, {"Location": f"/api/v1/invitations/{invitation.public_id}"}


@bp.patch("/members/<user_id>")
@require_token(WRITE)
def change_role(user_id: str) -> Response:
    caller = principal()
    body = json_body(schemas.MEMBER_UPDATE)
    access.require_owner(caller, "change roles")
    membership = access.membership_in(db.session, caller, user_id)
    accounts.change_role(db.session, membership, body["role"], actor())
    payload = member_json(membership)
    return jsonify(payload)


@bp.delete("/members/<user_id>")
@require_token(WRITE)
def remove_member(user_id: str) -> tuple[str, int]:
    caller = principal()
    membership = access.membership_in(db.session, caller, user_id)
    access.check_can_remove(caller, membership)
    accounts.remove_member(db.session, membership, actor())
    return "", 204
