"""Single sign-on: which keymint user an OpenID provider's claims stand for, and refusals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from app.services import audit
from app.services.accounts import normalize_email
from app.services.audit import Actor
from app.services.errors import Forbidden, InvalidInput


class SignInRefused(Forbidden):
    """The provider vouched for someone keymint will not sign in; `message` is for that person.

    `reason` is a short code for logs and the audit trail; `user_id` is the keymint user the
    claims named, when there is one (its workspaces' trails record the refusal); `domain` is
    the address's domain, for a log line that must not name the person.
    """

    def __init__(self, message: str, *, reason: str, user: User | None = None,
                 email: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.user_id = user.id if user is not None else None
        self.domain = email.rpartition("@")[2] if email else None


def _verified(value: Any) -> bool:
    # OIDC Core says boolean; some providers (Amazon Cognito) send the string "true".
    return value is True or value == "true"


def match_user(session: Session, claims: Mapping[str, Any]) -> User:
    """The active keymint user whose email the provider verified; never creates one.

    Matching is by email alone, and only when `email_verified` is true: an unverified address
    is whatever the person typed at the provider, so trusting it would let anyone claim
    anyone's account.
    """
    raw = claims.get("email")
    if not isinstance(raw, str) or not raw.strip():
        raise SignInRefused("Your identity provider did not share an email address, so keymint "
                            "cannot tell who you are. Ask your administrator to release the "
                            "email claim to keymint.", reason="no_email")
    try:
        email = normalize_email(raw)
    except InvalidInput:
        raise SignInRefused("Your identity provider sent an email address keymint cannot use.",
                            reason="invalid_email") from None
    user = session.scalar(select(User).where(User.email == email))
    if not _verified(claims.get("email_verified")):
        raise SignInRefused(f"Your identity provider has not verified the address {email}. "
                            "Verify it there, then sign in again.",
                            reason="email_unverified", user=user, email=email)
    if user is None:
        raise SignInRefused(f"No keymint account uses {email}. Ask a workspace admin to add "
                            "you; keymint does not create accounts at sign-in.",
                            reason="unknown_email", email=email)
    if not user.is_active:
        raise SignInRefused(f"The keymint account {email} is disabled. Ask an operator to "
                            "enable it.", reason="user_disabled", user=user, email=email)
    return user


def record_refusal(session: Session, refusal: SignInRefused, actor: Actor) -> None:
    """Audit a refused sign-in in each workspace of the user it named (none: nothing to do,
    there is no trail it belongs to; the caller logs it)."""
    if refusal.user_id is None:
        return
    user = session.get(User, refusal.user_id)
    if user is None:
        return
    for workspace_id in [m.workspace_id for m in user.memberships] or [None]:
        audit.record(session, "console.sign_in_refused", actor, workspace_id=workspace_id,
                     target_type="user", target_id=str(user.id),
                     details={"method": "sso", "reason": refusal.reason})
