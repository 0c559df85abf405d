"""Who is signed in to the console: the session cookie, sign_in, current(), @signed_in,
workspace_context() and safe_next()."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Response, abort, current_app, g, redirect, request, url_for
from sqlalchemy import select

from app.config import is_loopback_host
from app.extensions import db
from app.models import Membership, Role, User, Workspace
from app.services import console_auth
from app.services.audit import Actor
from app.web.context import request_actor

COOKIE = "keymint_console"
COOKIE_PATH = "/console"

G_USER = "console_user"
G_SESSION = "console_session"
G_WORKSPACE = "console_workspace"
G_ROLE = "console_role"
_G_LOOKED_UP = "console_looked_up"
G_SET_COOKIE = "console_set_cookie"  # a value to set, or "" to clear

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The person behind the console session of this request."""

    user_id: int
    email: str
    session_id: int
    method: str


def cookie_secure() -> bool:
    """Secure, except plain-HTTP development: AUTHLIB_INSECURE_TRANSPORT=1 on a loopback host."""
    insecure = os.environ.get("AUTHLIB_INSECURE_TRANSPORT", "").lower() in {"1", "true"}
    host = urlsplit("//" + request.host).hostname or ""
    return not (insecure and is_loopback_host(host))


def set_console_cookie(response: Response, name: str, value: str) -> None:
    """A console cookie: HttpOnly, SameSite=Lax, Path=/console, Secure unless development."""
    if value:
        response.set_cookie(name, value, path=COOKIE_PATH, secure=cookie_secure(),
                            httponly=True, samesite="Lax")
    else:
        response.delete_cookie(name, path=COOKIE_PATH, secure=cookie_secure(), httponly=True,
                               samesite="Lax")


def write_cookie(response: Response) -> None:
    """Set or clear the session cookie when this request signed in or out."""
    value = g.pop(G_SET_COOKIE, None)
    if value is not None:
        set_console_cookie(response, COOKIE, value)


def cookie_value() -> str | None:
    """The session cookie as the browser sent it (live or not)."""
    return request.cookies.get(COOKIE) or None


def actor(user_id: int | None = None) -> Actor:
    """The audit actor of a console request: the person, with IP, user agent, request id."""
    if user_id is None:
        user = current()
        user_id = user.user_id if user else None
    return request_actor("user", None if user_id is None else str(user_id), None)


def sign_in(user: User, method: str) -> None:
    """Start a console session for `user` (after SSO or a sign-in link): a session row, the
    cookie on this response, `console.signed_in` audited. Then redirect to safe_next().

    Raises console_auth.SignInRefused (a disabled user, no workspace) with a message to show.
    """
    previous = cookie_value()
    started = console_auth.start_session(db.session, user, method, actor(user.id))
    if previous:  # no fixation: an earlier session of this browser ends here
        old = console_auth.session_for(db.session, previous)
        if old is not None and old.id != started.row.id:
            old.ended_at = started.row.created_at
    setattr(g, G_SET_COOKIE, started.cookie_value)
    setattr(g, G_USER, ConsoleUser(user_id=user.id, email=user.email,
                                   session_id=started.row.id, method=method))
    setattr(g, G_SESSION, started.row)
    setattr(g, _G_LOOKED_UP, True)


def current() -> ConsoleUser | None:
    """The signed-in person of this request, or None (looked up once per request)."""
    if g.get(_G_LOOKED_UP):
        return g.get(G_USER)
    setattr(g, _G_LOOKED_UP, True)
    row = console_auth.session_for(db.session, cookie_value())
    if row is None:
        if cookie_value():
            setattr(g, G_SET_COOKIE, "")  # a dead session: drop its cookie
        return None
    user = ConsoleUser(user_id=row.user_id, email=row.user.email, session_id=row.id,
                       method=row.method)
    setattr(g, G_USER, user)
    setattr(g, G_SESSION, row)
    return user


def current_session() -> Any:
    """The ConsoleSession row of the signed-in person (after current())."""
    current()
    return g.get(G_SESSION)


def sign_out() -> None:
    """End this browser's session (audited) and clear its cookie."""
    row = current_session()
    if row is not None:
        console_auth.end_session(db.session, row, actor(row.user_id))
    setattr(g, G_SET_COOKIE, "")
    setattr(g, G_USER, None)


def sign_out_everywhere() -> int:
    """End every session of the signed-in person (audited); returns how many."""
    user = current()
    if user is None:
        return 0
    ended = console_auth.end_all_sessions(db.session, db.session.get_one(User, user.user_id),
                                          actor(user.user_id))
    setattr(g, G_SET_COOKIE, "")
    setattr(g, G_USER, None)
    return ended


def signed_in(view: F) -> F:
    """Only for a signed-in person; others are sent to the sign-in page, `next` kept."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current() is None:
            target = request.full_path if request.query_string else request.path
            if request.method != "GET":
                target = request.path
            return redirect(url_for("console.sign_in", next=target))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def workspace_context(slug: str) -> tuple[Workspace, Role]:
    """The workspace `slug` and the signed-in person's role in it, read now; 404 when the
    person is not a member (whether the workspace exists is not revealed)."""
    user = current()
    if user is None:
        abort(404)
    row = db.session.execute(
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Workspace.slug == slug, Membership.user_id == user.user_id)).first()
    if row is None:
        abort(404, description="There is no such workspace, or you are not a member of it.")
    workspace, role = row
    setattr(g, G_WORKSPACE, workspace)
    setattr(g, G_ROLE, Role(role))
    return workspace, Role(role)


def user_workspaces(user: ConsoleUser) -> list[tuple[str, str, str]]:
    """(slug, name, role) of every workspace of the person, by slug (for the nav)."""
    cached = g.get("console_user_workspaces")
    if cached is None:
        cached = [(slug, name, role) for slug, name, role in db.session.execute(
            select(Workspace.slug, Workspace.name, Membership.role)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user.user_id).order_by(Workspace.slug))]
        g.console_user_workspaces = cached
    return cached


def safe_next(value: str | None = None, default: str | None = None) -> str:
    """`value` (default: this request's `next`) when it is a console path on this site,
    else `default` (the console's start page): never an open redirect."""
    wanted = request.values.get("next", "") if value is None else value
    if is_safe_console_path(wanted):
        return wanted
    return default or url_for("console.index")


def is_safe_console_path(value: str) -> bool:
    if not value or len(value) > 2000 or not value.isprintable() or "\\" in value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "//[x": no path of this site
        return False
    segments = parts.path.split("/")
    # No "." or ".." segment (raw or percent-encoded): a browser would resolve
    # /console/../oauth/token to a page outside the console.
    if any(segment.replace("%2e", ".").replace("%2E", ".") in (".", "..")
           for segment in segments):
        return False
    return (not parts.scheme and not parts.netloc and not value.startswith("//")
            and (parts.path == "/console" or parts.path.startswith("/console/")))


def require_secret_key() -> None:
    """Console pages need KEYMINT_SECRET_KEY (CSRF tokens, the SSO flow); static files not."""
    if request.endpoint != "console.static" and not current_app.config.get("SECRET_KEY"):
        abort(503, description="The console is not set up on this server: the operator must "
                               "set KEYMINT_SECRET_KEY (see docs/console.md).")
