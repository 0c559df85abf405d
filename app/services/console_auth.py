"""Console sign-in: one-time sign-in links and server-side console sessions (their rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.models import (
    ConsoleLoginLink,
    ConsoleSession,
    Invitation,
    InvitationStatus,
    Membership,
    User,
    UserStatus,
)
from app.services import accounts
from app.services.audit import Actor, clean_user_agent
from app.services.errors import Forbidden, InvalidInput

LINK_VALIDITY = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(hours=1)
ABSOLUTE_LIFETIME = timedelta(hours=12)
# last_seen_at is written at most this often: a page view is not worth a write each time.
TOUCH_INTERVAL = timedelta(minutes=1)
SIGN_IN_METHODS = ("sso", "link")

# One message for every refused link (unknown, used, expired, disabled user): a link's
# holder learns nothing about which case it was.
LINK_REFUSED = ("This sign-in link is invalid, expired or already used. Ask an operator for "
                "a new one (`keymint console login-link EMAIL`).")
NO_WORKSPACE = ("{email} is not a member of any workspace and has no pending invitation; ask "
                "a workspace admin to add or invite you, then sign in again.")


class SignInRefused(Forbidden):
    """A sign-in that must not start a session; `message` is safe to show to the person."""

    code = "sign_in_refused"


@dataclass(frozen=True, slots=True)
class CreatedLink:
    token: str  # shown once (in the URL), stored only as a digest
    link: ConsoleLoginLink




def _belongs_somewhere(session: Session, user: User, now: datetime) -> bool:
    """A member of a workspace, or invited to one (pending, not expired): an invited person
    signs in to accept the invitation in the console."""
    member = exists().where(Membership.user_id == user.id)
    invited = exists().where(Invitation.email == user.email,
                             Invitation.status == InvitationStatus.PENDING.value,
                             Invitation.expires_at > now)
    return bool(session.scalar(select(member | invited)))


def check_may_sign_in(session: Session, user: User) -> None:
    """A disabled user, or one in no workspace and invited to none, gets no console session."""
    if user.status != UserStatus.ACTIVE:
        raise SignInRefused(f"the account {user.email} is disabled")
    if not _belongs_somewhere(session, user, utcnow()):
        raise SignInRefused(NO_WORKSPACE.format(email=user.email))


# --- sign-in links -------------------------------------------------------------------------


def create_login_link(session: Session, email: str, actor: Actor, *,
                      note: str | None = None) -> CreatedLink:
    """A link for the user with this email, valid 15 minutes, usable once (audited).

    Unknown email: NotFound; disabled user: InvalidInput (a link they could not use).
    """
    user = accounts.get_user_by_email(session, email)
    if user.status != UserStatus.ACTIVE:
        raise InvalidInput(f"user {user.email} is disabled: a sign-in link would not work",
                           field="email")
    if note is not None:
        note = note.strip()[:200] or None
    now = utcnow()
    token = credentials.new_login_link_token()
    link = ConsoleLoginLink(token_digest=credentials.digest(token), user_id=user.id,
                            created_at=now, expires_at=now + LINK_VALIDITY, used_at=None,
                            created_by=(actor.id or actor.type)[:64], note=note)
    session.add(link)
    session.flush()
    accounts.audit_in_each_workspace(session, "console.login_link_created", user, actor,
                                     details={"link_id": link.id,
                                              "expires_at": link.expires_at.isoformat()})
    return CreatedLink(token=token, link=link)


def _usable_link(session: Session, token: str, now: datetime) -> ConsoleLoginLink | None:
    if not credentials.is_login_link_token(token):  # garbage costs no query
        return None
    link = session.scalar(select(ConsoleLoginLink).where(
        ConsoleLoginLink.token_digest == credentials.digest(token)))
    if link is None or link.used_at is not None or now >= link.expires_at:
        return None
    return link


def peek_login_link(session: Session, token: str) -> User:
    """The user a still-usable link signs in (for the "Continue as EMAIL" page); nothing is
    consumed: link scanners fetch GETs. Refused like consume_login_link."""
    link = _usable_link(session, token, utcnow())
    if link is None or link.user.status != UserStatus.ACTIVE:
        raise SignInRefused(LINK_REFUSED)
    return link.user


def claim_link(session: Session, link_id: int, now: datetime) -> bool:
    """Mark the link used if nobody has: True for exactly one caller. The condition is
    checked by the UPDATE itself (PostgreSQL re-checks it after waiting for a concurrent
    claim's row lock; SQLite has one writer), never by an earlier read."""
    result = session.execute(
        update(ConsoleLoginLink)
        .where(ConsoleLoginLink.id == link_id, ConsoleLoginLink.used_at.is_(None),
               ConsoleLoginLink.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def consume_login_link(session: Session, token: str) -> User:
    """Use the link once: a single conditional UPDATE marks it used, so of two parallel
    requests exactly one changes the row and the other is refused."""
    now = utcnow()
    link = _usable_link(session, token, now)
    if link is None or not claim_link(session, link.id, now):
        raise SignInRefused(LINK_REFUSED)
    user = session.get_one(User, link.user_id)
    if user.status != UserStatus.ACTIVE:
        raise SignInRefused(LINK_REFUSED)
    return user


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartedSession:
    cookie_value: str  # the random id for the cookie; stored only as a digest
    row: ConsoleSession


def start_session(session: Session, user: User, method: str, actor: Actor) -> StartedSession:
    """A new console session for `user` after a successful SSO or link sign-in (audited
    `console.signed_in` in each of the user's workspaces, with IP and user agent)."""
    if method not in SIGN_IN_METHODS:
        raise InvalidInput(f"unknown sign-in method {method!r}", field="method")
    check_may_sign_in(session, user)
    now = utcnow()
    value = credentials.new_console_session_id()
    row = ConsoleSession(id_digest=credentials.digest(value), user_id=user.id, method=method,
                         created_at=now, last_seen_at=now, expires_at=now + ABSOLUTE_LIFETIME,
                         ended_at=None, ip=(actor.ip or None) and actor.ip[:64],
                         user_agent=clean_user_agent(actor.user_agent))
    session.add(row)
    session.flush()
    accounts.audit_in_each_workspace(session, "console.signed_in", user, actor,
                                     details={"method": method})
    return StartedSession(cookie_value=value, row=row)


def is_live(row: ConsoleSession, now: datetime) -> bool:
    """Not ended, under 12 h old and used within the last hour (both ends exclusive: at
    exactly 1 h idle or 12 h old the session is over)."""
    return (row.ended_at is None and now < row.expires_at
            and now < row.last_seen_at + IDLE_TIMEOUT)


def session_for(session: Session, cookie_value: str | None) -> ConsoleSession | None:
    """The live session behind a cookie value, its last use noted (at most once a minute);
    None when unknown, ended, timed out, or its user is disabled or in no workspace and
    invited to none (checked on every request, so disabling or removing a person takes
    effect at once)."""
    if not cookie_value or len(cookie_value) > 128:
        return None
    row = session.scalar(select(ConsoleSession).where(
        ConsoleSession.id_digest == credentials.digest(cookie_value)))
    now = utcnow()
    if row is None or not is_live(row, now):
        return None
    if row.user.status != UserStatus.ACTIVE or not _belongs_somewhere(session, row.user, now):
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
        session.flush()
    return row


def end_session(session: Session, row: ConsoleSession, actor: Actor) -> None:
    """Sign out this browser (audited `console.signed_out`)."""
    if row.ended_at is None:
        row.ended_at = utcnow()
    accounts.audit_in_each_workspace(session, "console.signed_out", row.user, actor,
                                     details={"method": row.method})
    session.flush()


def end_all_sessions(session: Session, user: User, actor: Actor) -> int:
    """Sign out every console session of `user`, this one included (audited
    `console.signed_out_everywhere`). Returns how many were still open."""
    now = utcnow()
    result = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user.id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session="fetch"))
    ended = result.rowcount or 0
    accounts.audit_in_each_workspace(session, "console.signed_out_everywhere", user, actor,
                                     details={"sessions_ended": ended})
    session.flush()
    return ended
