"""The workspace the admin-page tests start from: acme with an owner, an admin and a member,
each with a signed-in test client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent
from tests.console.support import csrf_from, sign_in

OWNER, ADMIN, MEMBER = "owner@example.com", "admin@example.com", "member@example.com"


@dataclass
class Acme:
    app: Any
    factory: Any
    owner: Any
    admin: Any
    member: Any

    def client_of(self, email: str) -> Any:
        client = self.app.test_client()
        sign_in(client, self.app, email)
        return client

    def events(self, action: str) -> list[Any]:
        with self.app.app_context():
            return list(db.session.scalars(select(AuditEvent).where(
                AuditEvent.action == action).order_by(AuditEvent.id)))


def make_acme(app: Any, factory: Any) -> Acme:
    factory.workspace(owner=factory.user(OWNER), slug="acme")
    factory.member("acme", factory.user(ADMIN), role="admin")
    factory.member("acme", factory.user(MEMBER), role="member")
    acme = Acme(app=app, factory=factory, owner=None, admin=None, member=None)
    acme.owner, acme.admin, acme.member = (acme.client_of(e) for e in (OWNER, ADMIN, MEMBER))
    return acme


def submit(client: Any, path: str, data: dict[str, Any] | None = None, *,
           page: str) -> Any:
    """POST a form of `page` (its CSRF token) to `path`."""
    return client.post(path, data={"csrf_token": csrf_from(client.get(page)), **(data or {})})


def text(response: Any) -> str:
    return response.get_data(as_text=True)
