"""Form helpers shared by console pages: a service's domain error shown next to its field."""

from __future__ import annotations

from collections.abc import Mapping

from app.services.errors import DomainError
from app.web.errors import DOMAIN_STATUS

GENERAL = "_form"  # errors that belong to no single field


def status_of(exc: DomainError) -> int:
    """The HTTP status the API answers for this error (400, 403, 404, 409, 410)."""
    return next((code for cls, code in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)


def field_errors(exc: DomainError, fields: Mapping[str, str] | None = None) -> dict[str, str]:
    """{form field: message}: the service's field (renamed through `fields`, e.g.
    expires_in_days -> expires) when the form has it, else the form-wide slot."""
    names = dict(fields or {})
    field = names.get(exc.field or "", exc.field) if exc.field else None
    if field is None or (fields is not None and field not in names.values()):
        field = GENERAL
    message = exc.message[:1].upper() + exc.message[1:]
    return {field: message if message.endswith(".") else message + "."}
