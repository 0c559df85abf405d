"""RFC 9728 protected-resource metadata: the document that points clients to keymint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

WELL_KNOWN = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class ProtectedResource:
    """This resource server as RFC 9728 describes it: its identifier (`resource`, the audience
    keymint puts in its tokens), the authorization server(s) that issue them, its scopes."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] = ()
    resource_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_issuer(cls, resource: str, issuer: str, scopes: Iterable[str] = (),
                   resource_name: str | None = None) -> ProtectedResource:
        return cls(resource, (issuer.rstrip("/"),), tuple(scopes), resource_name)

    @property
    def path(self) -> str:
        """Where the document is served: the well-known prefix, then the resource's path
        (RFC 9728 §3.1: `https://api.example/v1` -> `/.well-known/oauth-protected-resource/v1`)."""
        tail = urlsplit(self.resource).path.rstrip("/")
        return WELL_KNOWN + tail

    @property
    def url(self) -> str:
        """The document's absolute URL: the `resource_metadata` of RFC 6750 challenges."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{self.path}"

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
            "bearer_methods_supported": ["header"],
        }
        if self.scopes_supported:
            doc["scopes_supported"] = list(self.scopes_supported)
        if self.resource_name:
            doc["resource_name"] = self.resource_name
        return {**doc, **self.extra}

    def body(self) -> bytes:
        return json.dumps(self.document()).encode()

    def headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=3600")]
