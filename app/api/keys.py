"""/api/v1/keys: list, create, read, change, revoke and rotate keys; list and revoke tokens."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, jsonify

from app.api import schemas
from app.api.caller import actor, principal
from app.clock import isoformat
from app.extensions import db
from app.oauth.resource import require_token
from app.serialize import key_json, token_json
from app.services import access
from app.services import keys as key_service
from app.services import tokens as token_service
from app.web.context import issuer
from app.web.validation import json_body, query_args, timestamp

bp = Blueprint("keys", __name__, url_prefix="/api/v1")

READ = "keys:read"
WRITE = "keys:write"


@bp.get("/keys")
@require_token(READ)
def list_keys() -> Response:
    caller = principal()
    args = query_args(schemas.KEY_LIST_QUERY)
    user_id = access.key_list_owner(db.session, caller, args.get("user"))
    within = args.get("expiring_within_days")
    page = key_service.page_keys(
        db.session, workspace_id=caller.workspace_id, user_id=user_id,
        state=args.get("state"),
        expiring_within=timedelta(days=within) if within is not None else None,
        cursor=args.get("cursor"), limit=args.get("limit", key_service.DEFAULT_PAGE_SIZE))
    return jsonify({"keys": [key_json(k) for k in page.keys], "next_cursor": page.next_cursor})


@bp.post("/keys")
@require_token(WRITE)
def create_key() -> tuple[Response, int, dict[str, str]]:
    caller = principal()
    body = json_body(schemas.KEY_CREATE)
    scopes = key_service.parse_scopes(body["scopes"])
    access.check_grantable_scopes(caller, scopes)
    created = access.create_own_key(
        db.session, caller, actor(), name=body["name"], scopes=scopes,
        expires_at=timestamp(body.get("expires_at"), "expires_at"),
        expires_in_days=body.get("expires_in_days"), rate_limit=body.get("rate_limit"),
        resources=body.get("resources"), introspects_for=body.get("introspects_for"),
        issuer=issuer())
    payload = {**key_json(created.key), "client_secret": created.client_secret}
    return jsonify(payload), 201, {"Location": f"/api/v1/keys/{created.key.client_id}"}


@bp.get("/keys/<client_id>")
@require_token(READ)
def get_key(client_id: str) -> Response:
    return jsonify(key_json(access.visible_key(db.session, principal(), client_id)))


@bp.patch("/keys/<client_id>")
@require_token(WRITE)
def update_key(client_id: str) -> Response:
    caller = principal()
    body = json_body(schemas.KEY_UPDATE)
    key = access.visible_key(db.session, caller, client_id, lock=True)
    changes: dict = {}
    if "expires_at" in body:
        changes["expires_at"] = timestamp(body["expires_at"], "expires_at")
    if "rate_limit" in body:
        changes["rate_limit"] = body["rate_limit"]
    if "resources" in body or "introspects_for" in body:
        changes.update(resources=body.get("resources"),
                       introspects_for=body.get("introspects_for"), issuer=issuer())
    access.update_key(db.session, caller, key, actor(), name=body.get("name"),
                      scopes=body.get("scopes"), expires_in_days=body.get("expires_in_days"),
                      **changes)
    payload = key_json(key)
    return jsonify(payload)


@bp.delete("/keys/<client_id>")
@require_token(WRITE)
def revoke_key(client_id: str) -> tuple[str, int]:
    key = access.visible_key(db.session, principal(), client_id, lock=True)
    key_service.revoke_key(db.session, key, actor())
    return "", 204


@bp.post("/keys/<client_id>/rotate")
@require_token(WRITE)
def rotate_key(client_id: str) -> Response:
    body = json_body(schemas.KEY_ROTATE, optional=True)
    key = access.visible_key(db.session, principal(), client_id)
    access.check_can_rotate(principal(), key)
    rotated = key_service.rotate_secret(
        db.session, key, actor(), body.get("grace_period", key_service.DEFAULT_GRACE_PERIOD))
    payload = {**key_json(rotated.key), "client_secret": rotated.client_secret,
               "previous_secret_expires_at": isoformat(rotated.previous_expires_at)}
    return jsonify(payload)


@bp.get("/keys/<client_id>/tokens")
@require_token(READ)
def list_tokens(client_id: str) -> Response:
    key = access.visible_key(db.session, principal(), client_id)
    return jsonify({"tokens": [token_json(t)
                               for t in token_service.list_active(db.session, key.id)]})


@bp.delete("/keys/<client_id>/tokens")
@require_token(WRITE)
def revoke_tokens(client_id: str) -> Response:
    key = access.visible_key(db.session, principal(), client_id, lock=True)
    count = key_service.revoke_tokens(db.session, key, actor())
    return jsonify({"revoked": count})
