"""AccessToken: the one decision object for a verified token, whatever its format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


def _audience(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    return ()


def _scopes(value: Any) -> frozenset[str]:
    return frozenset(value.split()) if isinstance(value, str) else frozenset()


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class AccessToken:
    """An active token: who (subject), through which key (client_id), in which workspace, with
    which scopes, for which audience. JWT claims and introspection answers map to the same
    fields; `claims` keeps the full set for anything else."""

    format: Literal["jwt", "opaque"]
    subject: str | None
    client_id: str | None
    workspace_id: str | None
    scopes: frozenset[str]
    audience: tuple[str, ...]
    expires_at: int | None
    token_id: str | None
    issuer: str | None
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_claims(cls, fmt: Literal["jwt", "opaque"], claims: Mapping[str, Any]) -> AccessToken:
        exp = claims.get("exp")
        return cls(
            format=fmt,
            subject=_optional_str(claims.get("sub")),
            client_id=_optional_str(claims.get("client_id")),
            workspace_id=_optional_str(claims.get("workspace_id")),
            scopes=_scopes(claims.get("scope")),
            audience=_audience(claims.get("aud")),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            token_id=_optional_str(claims.get("jti")),
            issuer=_optional_str(claims.get("iss")),
            claims=dict(claims),
        )

    def missing_scopes(self, required: Iterable[str]) -> tuple[str, ...]:
        """The scopes of `required` this token lacks, in the order given."""
        return tuple(scope for scope in required if scope not in self.scopes)

    def has_scopes(self, *required: str) -> bool:
        return not self.missing_scopes(required)
