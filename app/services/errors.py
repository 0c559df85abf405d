"""Small domain errors the services raise; the HTTP and CLI layers translate them."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `message` is safe to show to the caller (never holds a secret)."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    code = "invalid_request"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Forbidden(DomainError):
    code = "forbidden"


class Gone(DomainError):
    """The thing existed but can no longer be used (an expired or revoked invitation)."""

    code = "gone"
