"""Reading the audit trail: filters, who may see what, keyset pages and streaming export."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from app import credentials
from app.models import ApiKey, AuditEvent
from app.models.audit import EVENT_FIELDS
from app.services import access, pagination
from app.services.errors import Forbidden, InvalidInput

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$")
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
CURSOR_KIND = "audit"
_BAD_CURSOR = "cursor is not a cursor this API returned"

# The facts, and seal_id for app.serialize.audit_event_json's `sealed`.
_EXPORT_COLUMNS = [*(getattr(AuditEvent, name) for name in EVENT_FIELDS), AuditEvent.seal_id]
# The columns of app.serialize.audit_event_json, i.e. of `audit export --format csv`.
CSV_HEADER = (*EVENT_FIELDS, "sealed")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to read. `own_keys_of` limits to events about one user's keys (role member)."""

    workspace_id: int | None = None
    action: str | None = None
    actor: str | None = None
    key: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    own_keys_of: int | None = None

    def __post_init__(self) -> None:
        if self.action is not None and (len(self.action) > 64
                                        or not _ACTION.match(self.action)):
            raise InvalidInput("action must be an action name like key.created, or a prefix "
                               "ending in '.' like key.", field="action")
        if self.actor is not None and not 1 <= len(self.actor) <= 64:
            raise InvalidInput("actor must be 1-64 characters", field="actor")
        if self.key is not None and not credentials.is_client_id(self.key):
            raise InvalidInput("key must be a client_id (key_...)", field="key")
        if self.since and self.until and self.since >= self.until:
            raise InvalidInput("since must be before until", field="since")

    def apply(self, query: Select) -> Select:
        if self.workspace_id is not None:
            query = query.where(AuditEvent.workspace_id == self.workspace_id)
        if self.action is not None:
            if self.action.endswith("."):
                query = query.where(AuditEvent.action.startswith(self.action, autoescape=True))
            else:
                query = query.where(AuditEvent.action == self.action)
        if self.actor is not None:
            query = query.where(AuditEvent.actor_id == self.actor)
        if self.key is not None:
            query = query.where(_about_keys([self.key]))
        if self.since is not None:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.occurred_at < self.until)
        if self.own_keys_of is not None:
            own = select(ApiKey.client_id).where(ApiKey.user_id == self.own_keys_of)
            if self.workspace_id is not None:
                own = own.where(ApiKey.workspace_id == self.workspace_id)
            query = query.where(_about_keys(own))
        return query


def _about_keys(client_ids: Any):
    """Events a key did (actor_key) or that were done to it (target)."""
    return or_(AuditEvent.actor_key.in_(client_ids),
               and_(AuditEvent.target_type == "key", AuditEvent.target_id.in_(client_ids)))


def own_keys_limit(session: Session, user_id: int, workspace_id: int) -> int | None:
    """Whose key events a reader sees: everything (None) for admins and owners, only events
    about their own keys (their user id) for members; Forbidden for a non-member.

    The role is read now, not from the token: a demotion takes effect on the next call.
    """
    role = access.role_now(session, user_id, workspace_id)
    if role is None:
        raise Forbidden("not a member of this workspace")
    return None if role.manages_workspace else user_id


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Any]
    next_cursor: str | None


def _before_v1(cursor: str) -> int | None:
    """The id in a cursor of the first release (base64url of {"v":1,"before":id}).

    Still read, never issued: a walk that spans the upgrade goes on. Drop it one release on.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(
            (cursor + "=" * (-len(cursor) % 4)).encode("ascii")))
        before = data["before"]
        if data.get("v") == 1 and type(before) is int and 1 <= before < 2**63:
            return before
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        pass
    return None


def _before(cursor: str) -> int:
    try:
        return pagination.decode_cursor(CURSOR_KIND, cursor, rejection=_BAD_CURSOR)
    except InvalidInput:
        before = _before_v1(cursor)
        if before is None:
            raise
        return before


def page(session: Session, where: EventFilter, *, cursor: str | None = None,
         limit: int = DEFAULT_PAGE_SIZE) -> Page:
    """Newest first, keyed on id: `cursor` names the last event of the previous page.

    A page never repeats an event and never skips one that was committed before the first
    page was read: ids only decrease along the walk, and new events get bigger ids.
    """
    query = where.apply(select(*_EXPORT_COLUMNS))
    if cursor is not None:
        query = query.where(AuditEvent.id < _before(cursor))
    rows, last_id = pagination.cut(
        session.execute(query.order_by(AuditEvent.id.desc()).limit(limit + 1)).all(), limit)
    return Page(events=rows, next_cursor=(pagination.encode_cursor(CURSOR_KIND, last_id)
                                          if last_id is not None else None))


def count(session: Session, where: EventFilter, *, unsealed_only: bool = False) -> int:
    query = where.apply(select(func.count()).select_from(AuditEvent))
    if unsealed_only:
        query = query.where(AuditEvent.seal_id.is_(None))
    return session.scalar(query) or 0


def stream(session: Session, where: EventFilter, *, batch: int = 1000) -> Iterator[Any]:
    """Every matching event, oldest first, in constant memory.

    One statement with yield_per: a server-side cursor on PostgreSQL (one consistent
    snapshot), incremental fetches on SQLite; rows are plain tuples, no identity map.
    """
    query = where.apply(select(*_EXPORT_COLUMNS)).order_by(AuditEvent.id)
    yield from session.execute(query.execution_options(yield_per=batch))
