"""keymint-resource: verify keymint access tokens in a resource server (see README.md)."""

from keymint_resource.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    TokenError,
    VerifierUnavailable,
)
from keymint_resource.metadata import ProtectedResource
from keymint_resource.token import AccessToken
from keymint_resource.verifier import TokenVerifier

__all__ = [
    "AccessToken",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "MissingToken",
    "ProtectedResource",
    "TokenError",
    "TokenVerifier",
    "VerifierUnavailable",
]
