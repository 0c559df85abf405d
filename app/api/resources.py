"""/api/v1/resources: the registered resources and their route policies, read-only; also
readable by a resource server with its own key's client credentials (its resource only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from app.extensions import db
from app.oauth.resource import require_token_or_resource_server, resource_server
from app.serialize import resource_json
from app.services import resources as resource_service
from app.web.context import issuer

bp = Blueprint("resources", __name__, url_prefix="/api/v1")

READ = "keys:read"
# keymint's own API, listed first under this id (it is not a stored row).
BUILTIN_ID = "keymint"


def _builtin_json() -> dict[str, Any]:
    spec = resource_service.builtin(issuer())
    return {"id": BUILTIN_ID, "uri": spec.uri, "name": spec.name, "scopes": list(spec.scopes),
            "routes": spec.policy.as_json() if spec.policy else None,
            "created_at": None, "updated_at": None}


@bp.get("/resources")
@require_token_or_resource_server(READ)
def list_resources() -> Response:
    found = [_builtin_json(),
             *(resource_json(r) for r in resource_service.list_resources(db.session))]
    server = resource_server()
    if server is not None:
        own = resource_service.served_by(server.introspects_for)
        found = [r for r in found if r["uri"] == own]
    return jsonify({"resources": found})


@bp.get("/resources/<id>")
@require_token_or_resource_server(READ)
def get_resource(id: str) -> Response:
    found = (_builtin_json() if id == BUILTIN_ID
             else resource_json(resource_service.get_resource_by_id(db.session, id)))
    server = resource_server()
    if server is not None:
        resource_service.check_served_by(server.introspects_for, found["uri"], id)
    return jsonify(found)
