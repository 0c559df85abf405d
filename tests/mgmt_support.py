"""Helpers for the management API tests: a workspace with an owner, an admin and a member."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_SCOPES = "introspect keys:read keys:write members:read members:write audit:read"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Person:
    email: str
    user_id: str
    key: Any
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Team:
    """One workspace with people in each role, each holding a key with every scope."""

    slug: str
    people: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Person:
        return self.people[role]


def user_id(app: Any, email: str) -> str:
    from app.extensions import db
    from app.services import accounts

    with app.app_context():
        return str(accounts.get_user_by_email(db.session, email).id)


def make_team(client: Any, factory: Any, scopes: str = ALL_SCOPES, **policy: Any) -> Team:
    owner = factory.user()
    slug = factory.workspace(owner=owner, **policy)
    team = Team(slug)
    for role, email in (("owner", owner), ("admin", None), ("member", None)):
        if email is None:
            email = factory.member(slug, role=role)
        key = factory.key(slug, email, scopes=scopes)
        team.people[role] = Person(email, user_id(factory.app, email), key,
                                   factory.token(client, key))
    return team


def add_person(client: Any, factory: Any, team: Team, name: str, role: str = "member",
               scopes: str = ALL_SCOPES) -> Person:
    email = factory.member(team.slug, role=role)
    key = factory.key(team.slug, email, scopes=scopes)
    person = Person(email, user_id(factory.app, email), key, factory.token(client, key))
    team.people[name] = person
    return person


def audit_events(app: Any, action: str | None = None) -> list[Any]:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import AuditEvent

    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        events = list(db.session.scalars(query))
        db.session.expunge_all()
        return events


def introspect(client: Any, caller_key: Any, token: str) -> dict[str, Any]:
    response = client.post("/oauth/introspect", data={"token": token}, auth=caller_key.auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def mint(client: Any, client_id: str, secret: str, scope: str | None = None) -> Any:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    return client.post("/oauth/token", data=data, auth=(client_id, secret))
