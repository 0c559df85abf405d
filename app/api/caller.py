"""The authenticated caller of a management route: its Principal and audit Actor."""

from __future__ import annotations

from flask import g

from app.oauth.resource import current_info
from app.services import access
from app.services.audit import Actor
from app.web.context import request_actor


def principal() -> access.Principal:
    """The caller behind the Bearer token, with its role as the Bearer check read it now."""
    found = g.get("keymint_principal")
    if found is None:
        found = access.principal_of(current_info())
        g.keymint_principal = found
    return found


def actor() -> Actor:
    """Audit actor: the user behind the token, with the key it was minted from."""
    caller = principal()
    return request_actor("user", str(caller.user_id), caller.client_id)
