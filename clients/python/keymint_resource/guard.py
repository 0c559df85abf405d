"""Guard: the per-request decision every integration (Flask, WSGI, ASGI) shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from keymint_resource.challenge import bearer_token, refusal
from keymint_resource.errors import TokenError
from keymint_resource.metadata import ProtectedResource
from keymint_resource.token import AccessToken
from keymint_resource.verifier import TokenVerifier

# path -> the scopes it needs beyond `scopes` (e.g. a lookup in the service's own route table)
ScopesFor = Callable[[str, str], Iterable[str]]


@dataclass
class Guard:
    """Which requests need a token, what they need, and how a refusal is answered.

    `exempt`: paths served without a token (exact match, or prefix when ending in "/").
    `scopes`: needed by every protected request; `scopes_for(method, path)` may add more.
    `metadata`: when set, its RFC 9728 document is served and named in every challenge.
    """

    verifier: TokenVerifier
    scopes: tuple[str, ...] = ()
    scopes_for: ScopesFor | None = None
    exempt: tuple[str, ...] = ()
    metadata: ProtectedResource | None = None
    realm: str | None = None
    _exempt_exact: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scopes = tuple(self.scopes)
        self.exempt = tuple(self.exempt)
        self._exempt_exact = frozenset(p for p in self.exempt if not p.endswith("/"))

    def is_exempt(self, path: str) -> bool:
        if path in self._exempt_exact:
            return True
        return any(path.startswith(p) for p in self.exempt if p.endswith("/"))

    def is_metadata(self, method: str, path: str) -> bool:
        return (self.metadata is not None and method in ("GET", "HEAD")
                and path == self.metadata.path)

    def required(self, method: str, path: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
        needed = list(self.scopes)
        if self.scopes_for is not None:
            needed.extend(self.scopes_for(method, path))
        needed.extend(extra)
        return tuple(dict.fromkeys(needed))

    def authorize(self, authorization: str | None, method: str, path: str,
                  extra: Iterable[str] = ()) -> AccessToken:
        """The request's token, checked; raises a TokenError to answer with refusal()."""
        token = bearer_token(authorization)
        return self.verifier.check(token, method, path, self.required(method, path, extra))

    def refusal(self, error: TokenError) -> tuple[int, list[tuple[str, str]], bytes]:
        return refusal(error, self.realm, self.metadata.url if self.metadata else None)
