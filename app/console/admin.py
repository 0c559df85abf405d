"""What the console's admin pages share: the person as a Principal, role gates, form errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Response, abort

from app.console import forms
from app.models import Role, Workspace
from app.services import access
from app.services.errors import DomainError

MANAGERS_ONLY = "Only admins and owners of this workspace can open this page."


@dataclass
class Page:
    """The workspace page being served: where, as whom, and the form errors to show."""

    workspace: Workspace
    role: Role
    user_id: int
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def principal(self) -> access.Principal:
        """The person as the services' access rules see a caller: their role read now. The
        console holds no key, so no key scopes (no rule used by these pages reads them)."""
        return access.Principal(user_id=self.user_id, workspace_id=self.workspace.id,
                                role=self.role, client_id="", key_scopes=frozenset())

    @property
    def manages(self) -> bool:
        return self.role.manages_workspace

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


def page(slug: str, *, managers_only: bool = False) -> Page:
    """The signed-in person's page in workspace `slug` (404 when not a member); a 403 page
    for a member when the page is for admins and owners."""
    from app.console import session

    workspace, role = session.workspace_context(slug)
    user = session.current()
    assert user is not None  # @signed_in ran first
    if managers_only and not role.manages_workspace:
        abort(403, description=MANAGERS_ONLY)
    return Page(workspace=workspace, role=role, user_id=user.user_id)


def sentence(message: str) -> str:
    """A service message ("only owners can …") as a sentence for a page."""
    first = message.split(" ", 1)[0]
    if first.isalpha() and first.islower():  # never "Ann@example.com", "Key_…"
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


def errors_of(error: DomainError, field: str | None = None, *,
              words: dict[str, str] | None = None) -> tuple[dict[str, str], int]:
    """The service's message keyed by the form field it is about (`field` overrides the
    service's own name for it, e.g. one row's role select), and the status the API answers
    with; a page answered with it rolls this request's changes back (status >= 400).

    `words` says the API's field names in the message as the page's labels do
    ("url must use https" -> "The URL must use https.").
    """
    message = error.message
    for name, said in (words or {}).items():
        message = re.sub(rf"\b{re.escape(name)}\b", said, message)
    return {field or error.field or "form": sentence(message)}, forms.status_of(error)


def html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html")
