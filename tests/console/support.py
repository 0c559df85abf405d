"""Helpers of the console tests: sign-in links, signing a test client in, form tokens."""

from __future__ import annotations

import re
from typing import Any

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(response: Any) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(response.get_data(as_text=True))
    assert match, "no form with a csrf_token on the page"
    return match.group(1)


def make_link(app: Any, email: str) -> str:
    """A fresh sign-in link token for `email` (as `keymint console login-link` makes)."""
    from app.extensions import db
    from app.services import console_auth
    from app.services.audit import Actor

    with app.app_context():
        created = console_auth.create_login_link(db.session, email, Actor.cli())
        db.session.commit()
        return created.token


def sign_in(client: Any, app: Any, email: str) -> Any:
    """Sign the test client in as `email` through a sign-in link; the POST's response."""
    token = make_link(app, email)
    page = client.get(f"/console/sign-in/link/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    response = client.post(f"/console/sign-in/link/{token}", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def post_form(client: Any, path: str, data: dict[str, Any] | None = None,
              page: str | None = None, **kwargs: Any) -> Any:
    """POST a console form with the token of `page` (default: the same path's GET)."""
    token = csrf_from(client.get(page or path))
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)
