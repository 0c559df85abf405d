"""Small helpers shared by test modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text


def introspect(client: Any, caller: Any, token: str) -> dict[str, Any]:
    response = client.post("/oauth/introspect", data={"token": token}, auth=caller.auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def token_response(client: Any, key: Any, **data: str) -> Any:
    return client.post("/oauth/token", data={"grant_type": "client_credentials", **data},
                       auth=key.auth)


def all_rows(app: Any, table: str) -> list[dict[str, Any]]:
    from app.extensions import db

    with app.app_context():
        rows = db.session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 (test-only, fixed names)
        return [dict(r._mapping) for r in rows]


def audit_actions(app: Any) -> list[str]:
    return [r["action"] for r in sorted(all_rows(app, "audit_events"), key=lambda r: r["id"])]
