"""/api/v1/webhooks: a workspace's webhook endpoints, their secrets and deliveries (admins)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from app.api import schemas
from app.api.caller import actor, principal
from app.extensions import db
from app.models import WebhookEndpoint
from app.oauth.resource import require_token
from app.serialize import webhook_delivery_json, webhook_json
from app.services import access, webhooks
from app.web.validation import json_body, query_args

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1")

READ = "webhooks:read"
WRITE = "webhooks:write"


def _allow_private() -> bool:
    return bool(current_app.config.get("KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS", False))


def _endpoint(webhook_id: str, *, lock: bool = False) -> WebhookEndpoint:
    """The caller's workspace's endpoint, for admins and owners only."""
    caller = principal()
    access.require_manager(caller, "manage webhooks")
    return webhooks.get_endpoint(db.session, caller.workspace_id, webhook_id, lock=lock)


def _with_secret(made: webhooks.EndpointWithSecret) -> dict:
    return {**webhook_json(made.endpoint), "secret": made.secret}


@bp.get("/webhooks")
@require_token(READ)
def list_webhooks() -> Response:
    caller = principal()
    access.require_manager(caller, "list webhooks")
    found = webhooks.list_endpoints(db.session, caller.workspace_id)
    return jsonify({"webhooks": [webhook_json(e) for e in found]})


@bp.post("/webhooks")
@require_token(WRITE)
def create_webhook() -> tuple[Response, int, dict[str, str]]:
    caller = principal()
    body = json_body(schemas.WEBHOOK_CREATE)
    access.require_manager(caller, "create webhooks")
    made = webhooks.create_endpoint(
        db.session, caller.workspace_id, actor(), url=body["url"],
        allow_private=_allow_private(), event_types=body.get("event_types"),
        description=body.get("description"), expiring_days=body.get("expiring_days"),
        enabled=body.get("enabled", True))
    return (jsonify(_with_secret(made)), 201,
            {"Location": f"/api/v1/webhooks/{made.endpoint.public_id}"})


@bp.get("/webhooks/<webhook_id>")
@require_token(READ)
def get_webhook(webhook_id: str) -> Response:
    return jsonify(webhook_json(_endpoint(webhook_id)))


@bp.patch("/webhooks/<webhook_id>")
@require_token(WRITE)
def update_webhook(webhook_id: str) -> Response:
    body = json_body(schemas.WEBHOOK_UPDATE)
    endpoint = _endpoint(webhook_id, lock=True)
    webhooks.update_endpoint(db.session, endpoint, actor(), allow_private=_allow_private(),
                             **body)
    return jsonify(webhook_json(endpoint))


@bp.delete("/webhooks/<webhook_id>")
@require_token(WRITE)
def delete_webhook(webhook_id: str) -> tuple[str, int]:
    webhooks.delete_endpoint(db.session, _endpoint(webhook_id, lock=True), actor())
    return "", 204


@bp.post("/webhooks/<webhook_id>/rotate-secret")
@require_token(WRITE)
def rotate_webhook_secret(webhook_id: str) -> Response:
    made = webhooks.rotate_secret(db.session, _endpoint(webhook_id, lock=True), actor())
    return jsonify(_with_secret(made))


@bp.post("/webhooks/<webhook_id>/test")
@require_token(WRITE)
def test_webhook(webhook_id: str) -> tuple[Response, int]:
    delivery = webhooks.send_test(db.session, _endpoint(webhook_id), actor())
    return jsonify(webhook_delivery_json(delivery)), 202


@bp.get("/webhooks/<webhook_id>/deliveries")
@require_token(READ)
def list_deliveries(webhook_id: str) -> Response:
    args = query_args(schemas.WEBHOOK_DELIVERY_QUERY)
    page = webhooks.page_deliveries(db.session, _endpoint(webhook_id),
                                    cursor=args.get("cursor"),
                                    limit=args.get("limit", webhooks.DEFAULT_PAGE_SIZE))
    return jsonify({"deliveries": [webhook_delivery_json(d) for d in page.deliveries],
                    "next_cursor": page.next_cursor})


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/retry")
@require_token(WRITE)
def retry_delivery(webhook_id: str, delivery_id: str) -> tuple[Response, int]:
    endpoint = _endpoint(webhook_id)
    delivery = webhooks.get_delivery(db.session, endpoint, delivery_id, lock=True)
    webhooks.retry_delivery(db.session, endpoint, delivery, actor())
    return jsonify(webhook_delivery_json(delivery)), 202
