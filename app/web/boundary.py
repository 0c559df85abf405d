"""The request boundary: one commit per request, and database failures as 503."""

from __future__ import annotations

import logging

from flask import Response, g, jsonify
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.extensions import db
from app.services import audit
from app.web.context import request_actor

log = logging.getLogger("keymint.boundary")

RETRY_AFTER_SECONDS = "5"


def unavailable_response() -> Response:
    response = jsonify(error="temporarily_unavailable",
                       error_description="The database is unavailable; nothing was changed. "
                                         "Retry later.")
    response.status_code = 503
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def conflict_response() -> Response:
    response = jsonify(error="conflict",
                       error_description="The change conflicts with a concurrent one; nothing "
                                         "was changed. Retry.")
    response.status_code = 409
    return response


def finish(response: Response) -> Response:
    """Commit a successful request (or one that must keep its security writes); else roll back.

    A failed client authentication is then audited in its own short transaction, so the
    event survives the rollback of the request that failed.
    """
    keep = response.status_code < 400 or g.get("commit_on_error", False)
    try:
        if keep:
            db.session.commit()
        else:
            db.session.rollback()
        failure = g.pop("auth_failure", None)
        if failure is not None:
            client_id = failure["client_id"] or None
            audit.record(db.session, "client.auth_failed", request_actor("client", None,
                         None), workspace_id=failure["workspace_id"],
                         target_type="key" if client_id else None, target_id=client_id,
                         details={"reason": failure["reason"]})
            db.session.commit()
    except IntegrityError as exc:
        # A constraint said no (a concurrent change won): the client may retry, the
        # database is fine — not a 503.
        db.session.rollback()
        log.warning("commit refused by a constraint: %s", type(exc.orig).__name__)
        return conflict_response()
    except (OperationalError, DBAPIError) as exc:
        db.session.rollback()
        log.warning("database unavailable at commit: %s",
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return unavailable_response()
    return response
