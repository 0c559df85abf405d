"""Recording audit events in the caller's transaction, and who the actor is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.models import AuditEvent

# Details are small, structured facts; values this long are almost certainly a mistake.
_MAX_DETAIL_LEN = 500
_FORBIDDEN_DETAIL_KEYS = frozenset(
    {"secret", "client_secret", "token", "access_token", "digest", "authorization", "password"}
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a change: a user through a key, the CLI, the system or a legacy key."""

    type: str
    id: str | None = None
    key: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        return cls(type="system", id="cli")


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in (details or {}).items():
        if name.lower() in _FORBIDDEN_DETAIL_KEYS:
            raise ValueError(f"audit details must not carry {name!r}")
        if isinstance(value, str) and len(value) > _MAX_DETAIL_LEN:
            value = value[:_MAX_DETAIL_LEN] + "…"
        clean[name] = value
    return clean


# The User-Agent as kept: enough to tell clients and versions apart, not a place to store
# whatever a client sends (the header may be kilobytes).
USER_AGENT_MAX_LEN = 256


def clean_user_agent(value: str | None) -> str | None:
    """A client's User-Agent as keymint stores it: credentials redacted, then capped.

    Redacted first, so a secret across the cap is hidden whole rather than cut into a
    shorter leak. No NUL (PostgreSQL rejects it). Longer values end in "…" at the cap.
    """
    if not value:
        return None
    value = credentials.redact_credentials(value.replace("\x00", "\ufffd"))
    if len(value) > USER_AGENT_MAX_LEN:
        value = value[:USER_AGENT_MAX_LEN - 1] + "…"
    return value


# Whether events are written at all. The application installs the switch
# (app/runtime/audit_switch.py reads KEYMINT_AUDIT_ENABLED); services never read its config.
_switch: Callable[[], bool] | None = None


def use_switch(switch: Callable[[], bool] | None) -> None:
    """Ask `switch()` before each write from now on (None: always write)."""
    global _switch
    _switch = switch


def enabled() -> bool:
    """KEYMINT_AUDIT_ENABLED (default true); false exists only for the benchmark baseline."""
    switch = _switch
    return switch is None or switch()


def _event_values(action: str, actor: Actor, workspace_id: int | None,
                  target_type: str | None, target_id: str | None,
                  details: dict[str, Any] | None) -> dict[str, Any]:
    """The columns of one event, shared by record() (ORM) and append() (Core INSERT)."""
    return {
        "occurred_at": utcnow(),
        "workspace_id": workspace_id,
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_key": actor.key,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "ip": actor.ip,
        "user_agent": clean_user_agent(actor.user_agent),
        "request_id": actor.request_id,
        "details": _clean_details(details),
    }


def record(
    session: Session,
    action: str,
    actor: Actor,
    *,
    workspace_id: int | None,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one event to the session: it commits or rolls back with the change it describes.

    Only an INSERT: no lock, no hash, no read (sealing happens later, in batches).
    """
    event = AuditEvent(**_event_values(action, actor, workspace_id, target_type, target_id,
                                       details))
    if enabled():
        session.add(event)
    return event


# Hooks that would see an ORM AuditEvent in session.new after a flush (token metrics, the log
# mirror) register here to be told about events written by append() instead.
_append_listeners: list[Any] = []


def on_append(listener: Any) -> None:
    """Call `listener(session, values)` for each event append() writes (id included)."""
    if listener not in _append_listeners:
        _append_listeners.append(listener)


_INSERT_EVENT = insert(AuditEvent)


def append(
    session: Session,
    action: str,
    actor: Actor,
    *,
    workspace_id: int | None,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """record() for the hot paths: the same row, INSERTed now through the session's connection.

    Same columns, same transaction (it commits or rolls back with the caller's change), no
    ORM object and no unit-of-work flush. Hooks that follow committed events (token metrics,
    KEYMINT_AUDIT_LOG) get the row's values through on_append().
    """
    if not enabled():
        return
    values = _event_values(action, actor, workspace_id, target_type, target_id, details)
    result = session.connection().execute(_INSERT_EVENT, values)
    if _append_listeners:
        values["id"] = result.inserted_primary_key[0]
        values["seal_id"] = None
        for listener in _append_listeners:
            listener(session, values)
