"""Mirror committed audit events as JSON lines to the `keymint.audit` logger (for a SIEM)."""

from __future__ import annotations

import json
import logging
import sys
from types import SimpleNamespace
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.models import AuditEvent
from app.models.audit import EVENT_FIELDS
from app.serialize import audit_event_json

log = logging.getLogger("keymint.audit")
_PENDING = "keymint_audit_pending"
_installed = False


def _mirroring() -> bool:
    return has_app_context() and current_app.config.get("KEYMINT_AUDIT_LOG", False)


def _snapshot(obj: AuditEvent) -> dict[str, Any]:
    # Read the instance's own values: after a flush an unset attribute would lazy-load.
    values = {name: obj.__dict__.get(name) for name in (*EVENT_FIELDS, "seal_id")}
    return audit_event_json(SimpleNamespace(**values))


def _collect(session: Session, _flush_context: Any) -> None:
    """After each flush: remember the new events (ids are assigned now, values still set)."""
    if not _mirroring():
        return
    fresh = [_snapshot(obj) for obj in session.new if isinstance(obj, AuditEvent)]
    if fresh:
        session.info.setdefault(_PENDING, []).extend(fresh)


def _appended(session: Session, values: dict[str, Any]) -> None:
    """An event written by audit.append() (a Core insert, never in session.new)."""
    if _mirroring():
        session.info.setdefault(_PENDING, []).append(
            audit_event_json(SimpleNamespace(**values)))


def _emit(session: Session) -> None:
    """After the commit: only now are the events real, so only now are they logged."""
    for item in session.info.pop(_PENDING, []):
        log.info(json.dumps(item, sort_keys=True, separators=(",", ":")))


def _discard(session: Session) -> None:
    # keymint uses no savepoints, so any rollback drops every event flushed since commit.
    session.info.pop(_PENDING, None)


def init_app(app: Flask) -> None:
    """Hook the session once per process when an app asks for the mirror.

    The logger emits at INFO; unless a handler was attached to `keymint.audit` already,
    it gets one writing the bare JSON line to stderr (beside the server's own lines), not
    propagated, so each event is one clean line a log shipper can forward.
    """
    global _installed
    if not app.config.get("KEYMINT_AUDIT_LOG"):
        return
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    if not _installed:
        from app.services import audit

        audit.on_append(_appended)
        event.listen(Session, "after_flush", _collect)
        event.listen(Session, "after_commit", _emit)
        event.listen(Session, "after_rollback", _discard)
        _installed = True
