"""Bearer-token protection for keymint's own API, over the same token lookup."""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc6750 import BearerTokenValidator

from app.clock import utcnow
from app.extensions import db
from app.oauth.errors import REALM
from app.services import tokens as token_service


class TokenView:
    """What Authlib's validator asks of a token, answered from a TokenInfo."""

    __slots__ = ("info",)

    def __init__(self, info: token_service.TokenInfo) -> None:
        self.info = info

    def is_expired(self) -> bool:
        now = utcnow()
        return now >= self.info.expires_at or (
            self.info.key_expires_at is not None and now >= self.info.key_expires_at)

    def is_revoked(self) -> bool:
        i = self.info
        return (i.revoked_at is not None or i.key_revoked or not i.secret_live(utcnow())
                or not i.user_active or not i.is_member)

    def get_scope(self) -> str:
        return " ".join(self.info.scopes)


class KeymintBearerValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> TokenView | None:
        info = token_service.lookup(db.session, token_string)
        return TokenView(info) if info is not None else None


require_token = ResourceProtector()
require_token.register_token_validator(KeymintBearerValidator(realm=REALM))


def current_info() -> token_service.TokenInfo:
    return current_token.info
