"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.runtime import database, metrics

bp = Blueprint("ops", __name__)
log = logging.getLogger("keymint.ops")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the database answers within KEYMINT_READYZ_TIMEOUT_MS."""
    try:
        database.probe(db.engine, current_app.config["KEYMINT_READYZ_TIMEOUT_MS"])
    except DBAPIError as exc:
        log.warning("readiness probe failed: %s", type(exc.orig or exc).__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, status=200, content_type=content_type)
