"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.clock import utcnow
from app.extensions import db
from app.runtime import database, limiter, metrics
from app.services import webhooks
from app.web.errors import error_response

bp = Blueprint("ops", __name__)
log = logging.getLogger("keymint.ops")

METRICS_REALM = "keymint-metrics"


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the database answers within KEYMINT_READYZ_TIMEOUT_MS.

    A process counting rate limits in memory because Redis is away still serves (limits
    then hold per process, not per cluster): ready, with `degraded` naming what is wrong.
    """
    storage = limiter.storage_state()
    degraded = ["rate_limit_storage"] if storage == "fallback" else []
    try:
        database.probe(db.engine, current_app.config["KEYMINT_READYZ_TIMEOUT_MS"])
    except DBAPIError as exc:
        log.warning("readiness probe failed: %s", type(exc.orig or exc).__name__)
        return jsonify(status="unavailable", database="unreachable",
                       rate_limit_storage=storage, degraded=degraded), 503
    return jsonify(status="degraded" if degraded else "ok", database="ok",
                   rate_limit_storage=storage, degraded=degraded), 200


def _metrics_authorized() -> bool:
    """True when KEYMINT_METRICS_TOKEN is unset, or sent as `Authorization: Bearer <token>`."""
    expected = current_app.config.get("KEYMINT_METRICS_TOKEN")
    if expected is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values arrive as latin-1 text; compare bytes in constant time.
    return hmac.compare_digest(given.strip().encode("latin-1", "replace"), expected.reveal())


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if not _metrics_authorized():
        response = error_response(401, "unauthorized",
                                  "/metrics needs Authorization: Bearer <KEYMINT_METRICS_TOKEN>")
        response.headers["WWW-Authenticate"] = f'Bearer realm="{METRICS_REALM}"'
        return response
    body, content_type = metrics.render(_webhook_backlog())
    return Response(body, status=200, content_type=content_type)


def _webhook_backlog() -> list[Any]:
    """The webhook outbox gauges, read now (indexed counts). Without a database the scrape
    still answers, with the process metrics only; /readyz reports the database."""
    now = utcnow()
    try:
        found = webhooks.backlog(db.session, now)
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("webhook backlog not read for /metrics: %s",
                    type(getattr(exc, "orig", None) or exc).__name__)
        return []
    return metrics.webhook_backlog_families(found, now)
