"""The request boundary: the one commit or rollback of every request, and what outlives it.

Every request ends here (one app-wide after_request hook): a success commits, an error
answer rolls back, unless the request asked to keep its changes (keep_changes_on_error).
Then the writes queued with write_after() run in their own short transaction, so a failed
client authentication or a rate-limit sample is audited even though its request rolled back.
A commit refused by a constraint is answered 409, a database that fails at commit 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.extensions import db
from app.web.telemetry import note_error

log = logging.getLogger("keymint.boundary")

RETRY_AFTER_SECONDS = "5"

Writer = Callable[[Session], None]

_KEEP = "keymint_keep_on_error"
_WRITES = "keymint_after_writes"


def unavailable_response() -> Response:
    note_error("temporarily_unavailable")
    response = jsonify(error="temporarily_unavailable",
                       error_description="The database is unavailable; nothing was changed. "
                                         "Retry later.")
    response.status_code = 503
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def conflict_response() -> Response:
    note_error("conflict")
    response = jsonify(error="conflict",
                       error_description="The change conflicts with a concurrent one; nothing "
                                         "was changed. Retry.")
    response.status_code = 409
    return response


def keep_changes_on_error() -> None:
    """Commit this request's changes although it answers with an error.

    For security writes an error answer must not undo, e.g. the lineage revocation of a
    rotation that detected token reuse.
    """
    setattr(g, _KEEP, True)


def write_after(name: str, writer: Writer, *, best_effort: bool = False) -> None:
    """Run `writer(session)` once this request's transaction has ended, in a transaction of its own.

    For audit events that must be written whatever the request's outcome. One writer per
    `name`: a later one replaces an earlier one. A writer that fails makes the answer a 409 or
    503 like a failed commit; a `best_effort` one is logged and dropped instead.
    """
    writes: dict[str, tuple[Writer, bool]] | None = g.get(_WRITES)
    if writes is None:
        writes = {}
        setattr(g, _WRITES, writes)
    writes[name] = (writer, best_effort)


def _run_writers(session: Session, writers: list[Writer]) -> None:
    for writer in writers:
        writer(session)
    session.commit()


def _untouched() -> bool:
    """True when the request never began a transaction nor staged a change: nothing to end.

    Most requests (health checks, introspection, bearer reads on autocommit connections) are
    like that; asking the scoped session to commit would build a Session and a transaction
    for nothing on every one of them.
    """
    if not db.session.registry.has():
        return True
    session = db.session()
    return not (session.in_transaction() or session.new or session.dirty or session.deleted)


def finish(response: Response) -> Response:
    """Commit a successful request (or one that must keep its security writes); else roll back.

    Then run the queued writes. Returns the response, or the 409/503 that replaces it.
    """
    writes: dict[str, tuple[Writer, bool]] = g.pop(_WRITES, None) or {}
    keep_on_error = g.pop(_KEEP, False)
    if not writes and _untouched():
        return response
    keep = response.status_code < 400 or keep_on_error
    session = db.session
    try:
        if keep:
            session.commit()
        else:
            session.rollback()
        required = [writer for writer, best_effort in writes.values() if not best_effort]
        if required:
            _run_writers(session, required)
    except IntegrityError as exc:
        # A constraint said no (a concurrent change won): the client may retry, the
        # database is fine — not a 503.
        session.rollback()
        log.warning("commit refused by a constraint: %s", type(exc.orig).__name__)
        return conflict_response()
    except (OperationalError, DBAPIError) as exc:
        session.rollback()
        log.warning("database unavailable at commit: %s",
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return unavailable_response()
    for name, (writer, best_effort) in writes.items():
        if best_effort:
            try:
                _run_writers(session, [writer])
            except SQLAlchemyError:
                session.rollback()
                log.warning("database unavailable; %s not audited", name)
    return response


def init_app(app: Flask) -> None:
    """Register the boundary for every blueprint. Call it after every other after_request hook
    is registered: Flask runs them in reverse, so the boundary runs first and the others
    (headers, telemetry, rate-limit failure counts) see the final answer, 409 or 503 included.
    """
    app.after_request(finish)
