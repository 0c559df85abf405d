"""The OAuth client Authlib sees: a key credential plus the secret that authenticated it."""

from __future__ import annotations

from dataclasses import dataclass

from app.services.keys import KeyCredential, SecretRow

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(slots=True)
class KeyClient:
    """Implements the part of Authlib's ClientMixin the client_credentials flow uses."""

    credential: KeyCredential
    secret: SecretRow

    @property
    def client_id(self) -> str:
        return self.credential.client_id

    def get_client_id(self) -> str:
        return self.credential.client_id

    def get_allowed_scope(self, scope: str | None) -> str:
        held = self.credential.scopes
        if not scope:
            return " ".join(held)
        return " ".join(s for s in scope.split() if s in held)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def get_default_redirect_uri(self) -> None:
        return None

    def check_client_secret(self, client_secret: str) -> bool:
        # Authentication already compared digests in KeyAuthentication; never re-enter here.
        return True
