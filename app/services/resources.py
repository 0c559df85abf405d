"""Resources (RFC 8707): registration, validation, the per-process catalog and route decisions."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import ApiKey, Resource, ResourceCatalog
from app.models.resources import MAX_URI_LEN
from app.services import audit, reads
from app.services.audit import Actor
from app.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.services.keys import INTROSPECT_SCOPE, MANAGEMENT_SCOPES, clean_name, parse_scopes
from app.transactions import begin_write

# keymint's own management API, a resource of every keymint server at <issuer>/api/v1.
BUILTIN_PATH = "/api/v1"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DENY = "deny"
MAX_ROUTES = 500
MAX_TEMPLATE_LEN = 400
# A literal path segment: RFC 3986 pchar (percent-escapes included); a parameter: {name}.
_LITERAL = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+$")
_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]{0,63}\}$")


# --- validation ----------------------------------------------------------------------------


def clean_uri(uri: object, field: str = "uri") -> str:
    """An RFC 8707 resource identifier: an absolute URI with a host, no fragment, no query."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput("a resource must be an absolute URI, e.g. https://api.example.com",
                           field=field)
    shown = uri[:120]
    if len(uri) > MAX_URI_LEN or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in uri):
        raise InvalidInput(f"resource {shown!r} is not an absolute URI (at most {MAX_URI_LEN} "
                           "printable ASCII characters, no spaces)", field=field)
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"resource {shown!r} is not an absolute http(s) URI with a host",
                           field=field)
    if "#" in uri:
        raise InvalidInput(f"resource {shown!r} must not have a fragment (RFC 8707 §2)",
                           field=field)
    if parts.query or "?" in uri:
        raise InvalidInput(f"resource {shown!r} must not have a query", field=field)
    return uri


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    segments: tuple[str, ...]  # as written: literal text, or "{name}" for a parameter
    scopes: tuple[str, ...]

    @property
    def literals(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))

    def matches(self, method: str, segments: list[str]) -> bool:
        if method != self.method or len(segments) != len(self.segments):
            return False
        return all((want.startswith("{") and got != "") or want == got
                   for want, got in zip(self.segments, segments, strict=True))


@dataclass(frozen=True, slots=True)
class Policy:
    """A resource's route policy: rules, and what unlisted routes need (deny or a scope)."""

    default: str
    routes: tuple[Route, ...]

    def as_json(self) -> dict[str, Any]:
        return {"default": self.default,
                "routes": [{"method": r.method, "path": r.path, "scopes": list(r.scopes)}
                           for r in self.routes]}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    missing_scope: str | None = None  # the scopes (any one would do) the token lacks


def split_path(path: str) -> list[str]:
    return path.split("/")[1:]


def parse_template(path: object, where: str) -> tuple[str, tuple[str, ...]]:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidInput(f"{where}: path must be a string starting with '/'", field="routes")
    if len(path) > MAX_TEMPLATE_LEN:
        raise InvalidInput(f"{where}: path is longer than {MAX_TEMPLATE_LEN} characters",
                           field="routes")
    segments = split_path(path)
    if path == "/":
        return path, ("",)
    names: set[str] = set()
    for segment in segments:
        if _PARAM.match(segment):
            if segment in names:
                raise InvalidInput(f"{where}: parameter {segment} appears twice in {path!r}",
                                   field="routes")
            names.add(segment)
        elif not _LITERAL.match(segment):
            raise InvalidInput(
                f"{where}: path template {path[:120]!r} does not parse: each segment between "
                "slashes is literal text (RFC 3986 path characters) or one {name}",
                field="routes")
    return path, tuple(segments)


def _rule_scopes(value: object, where: str, known: frozenset[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where}: scopes must be a non-empty list of scopes", field="routes")
    try:
        scopes = parse_scopes(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", field="routes") from None
    unknown = [s for s in scopes if s not in known]
    if unknown:
        raise InvalidInput(f"{where}: scope {unknown[0]!r} is not one of the resource's scopes",
                           field="routes")
    return tuple(scopes)


def parse_policy(data: object, scopes: list[str]) -> Policy:
    """A route file's content (already JSON-decoded), checked against the resource's scopes.

    Every error names the rule (1-based, as `routes[n]` would count from 0) and the value.
    """
    known = frozenset(scopes)
    if not isinstance(data, dict):
        raise InvalidInput('a route file is a JSON object: {"default": "deny", "routes": [...]}',
                           field="routes")
    extra = sorted(set(data) - {"default", "routes"})
    if extra:
        raise InvalidInput(f"route file: unknown field {extra[0]!r}", field="routes")
    default = data.get("default", DENY)
    if default != DENY and (not isinstance(default, str) or default not in known):
        raise InvalidInput(f"route file: default must be 'deny' or one of the resource's "
                           f"scopes, got {str(default)[:80]!r}", field="routes")
    rules = data.get("routes", [])
    if not isinstance(rules, list):
        raise InvalidInput("route file: routes must be a list", field="routes")
    if len(rules) > MAX_ROUTES:
        raise InvalidInput(f"route file: at most {MAX_ROUTES} routes", field="routes")
    routes: list[Route] = []
    seen: dict[tuple[str, tuple[str, ...]], int] = {}
    for index, rule in enumerate(rules, start=1):
        where = f"route {index}"
        if not isinstance(rule, dict):
            raise InvalidInput(f"{where}: a route is an object with method, path and scopes",
                               field="routes")
        extra = sorted(set(rule) - {"method", "path", "scopes"})
        if extra:
            raise InvalidInput(f"{where}: unknown field {extra[0]!r}", field="routes")
        method = rule.get("method")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidInput(f"{where}: method must be one of {', '.join(METHODS)}, got "
                               f"{str(method)[:20]!r}", field="routes")
        method = method.upper()
        path, segments = parse_template(rule.get("path"), where)
        shape = (method, tuple("{}" if s.startswith("{") else s for s in segments))
        if shape in seen:
            raise InvalidInput(f"{where}: {method} {path} repeats route {seen[shape]}",
                               field="routes")
        seen[shape] = index
        routes.append(Route(method, path, segments,
                            _rule_scopes(rule.get("scopes"), where, known)))
    return Policy(default=default, routes=tuple(routes))


def load_policy_text(text: str, scopes: list[str]) -> Policy:
    """A route file as read from disk; a JSON syntax error names its line and column."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"route file: not JSON (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg})", field="routes") from None
    return parse_policy(data, scopes)


def decide(policy: Policy | None, method: str, path: str, scopes: list[str]) -> Decision:
    """May a token with `scopes` call METHOD path? The most literal matching rule decides.

    A rule allows a token holding any one of its scopes; an unlisted route needs the policy's
    default scope, or is denied. No policy: the audience alone decides (allowed).
    """
    if policy is None:
        return Decision(True)
    method = method.upper()
    segments = split_path(path) if path != "/" else [""]
    best: Route | None = None
    for route in policy.routes:
        if route.matches(method, segments) and (best is None or route.literals > best.literals):
            best = route
    held = set(scopes)
    if best is None:
        if policy.default == DENY:
            return Decision(False)
        needed: tuple[str, ...] = (policy.default,)
    else:
        needed = best.scopes
    if held.intersection(needed):
        return Decision(True)
    return Decision(False, " ".join(needed))


# --- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """A resource as the token path sees it (plain data, cached per process)."""

    uri: str
    name: str
    scopes: tuple[str, ...]
    policy: Policy | None
    builtin: bool = False


# Routes of keymint's own /api/v1 and the scopes they need (any one of them). Routes open to
# any token are listed with every management scope.
_ANY = ["keys:read", "keys:write", "members:read", "members:write", "audit:read",
        "webhooks:read", "webhooks:write"]
_BUILTIN_ROUTES = [
    ("GET", "/api/v1/me", _ANY),
    ("GET", "/api/v1/invitations/{invitation_id}", _ANY),
    ("POST", "/api/v1/invitations/{invitation_id}/accept", _ANY),
    ("GET", "/api/v1/workspace", ["keys:read", "members:read"]),
    ("PATCH", "/api/v1/workspace", ["members:write"]),
    ("GET", "/api/v1/keys", ["keys:read"]),
    ("POST", "/api/v1/keys", ["keys:write"]),
    ("GET", "/api/v1/keys/{client_id}", ["keys:read"]),
    ("PATCH", "/api/v1/keys/{client_id}", ["keys:write"]),
    ("DELETE", "/api/v1/keys/{client_id}", ["keys:write"]),
    ("POST", "/api/v1/keys/{client_id}/rotate", ["keys:write"]),
    ("GET", "/api/v1/keys/{client_id}/tokens", ["keys:read"]),
    ("DELETE", "/api/v1/keys/{client_id}/tokens", ["keys:write"]),
    ("GET", "/api/v1/legacy-keys", ["keys:read"]),
    ("GET", "/api/v1/resources", ["keys:read"]),
    ("GET", "/api/v1/resources/{id}", ["keys:read"]),
    ("GET", "/api/v1/members", ["members:read"]),
    ("POST", "/api/v1/members", ["members:write"]),
    ("PATCH", "/api/v1/members/{user_id}", ["members:write"]),
    ("DELETE", "/api/v1/members/{user_id}", ["members:write"]),
    ("GET", "/api/v1/invitations", ["members:read"]),
    ("DELETE", "/api/v1/invitations/{invitation_id}", ["members:write"]),
    ("GET", "/api/v1/audit-events", ["audit:read"]),
    ("GET", "/api/v1/webhooks", ["webhooks:read"]),
    ("POST", "/api/v1/webhooks", ["webhooks:write"]),
    ("GET", "/api/v1/webhooks/{webhook_id}", ["webhooks:read"]),
    ("PATCH", "/api/v1/webhooks/{webhook_id}", ["webhooks:write"]),
    ("DELETE", "/api/v1/webhooks/{webhook_id}", ["webhooks:write"]),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret", ["webhooks:write"]),
    ("POST", "/api/v1/webhooks/{webhook_id}/test", ["webhooks:write"]),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries", ["webhooks:read"]),
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
     ["webhooks:write"]),
]
BUILTIN_SCOPES = ("keys:read", "keys:write", "members:read", "members:write", "audit:read",
                  "webhooks:read", "webhooks:write")
_BUILTIN_POLICY = parse_policy(
    {"default": DENY, "routes": [{"method": m, "path": p, "scopes": s}
                                 for m, p, s in _BUILTIN_ROUTES]}, list(BUILTIN_SCOPES))


def builtin(issuer: str) -> ResourceSpec:
    """keymint's own management API as a resource: `<issuer>/api/v1`."""
    return ResourceSpec(uri=issuer.rstrip("/") + BUILTIN_PATH, name="keymint management API",
                        scopes=BUILTIN_SCOPES, policy=_BUILTIN_POLICY, builtin=True)


def for_own_api(audience: list[str], issuer: str | None) -> bool:
    """May a token with this audience call keymint's own API?

    A token without an audience predates resources and stays good everywhere. Otherwise its
    audience must name `<issuer>/api/v1`: exactly, with KEYMINT_ISSUER set (`issuer`); without
    it the issuer is derived from each request's Host, so a token minted through one name of
    the server must still work through another, and any audience URI whose path ends in
    `/api/v1` counts.
    """
    if not audience:
        return True
    if issuer:
        return issuer.rstrip("/") + BUILTIN_PATH in audience
    return any(urlsplit(uri).path.rstrip("/").endswith(BUILTIN_PATH) for uri in audience)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every registered resource at one catalog version, plus keymint's own API."""

    version: str | None
    registered: dict[str, ResourceSpec]

    def with_builtin(self, issuer: str) -> dict[str, ResourceSpec]:
        """keymint's own API first; it wins over a registered resource of the same URI."""
        own = builtin(issuer)
        return {own.uri: own, **{u: r for u, r in self.registered.items() if u != own.uri}}


def spec_of(row: Any) -> ResourceSpec:
    scopes = row.scopes.split()
    policy = parse_policy(json.loads(row.policy), scopes) if row.policy else None
    return ResourceSpec(uri=row.uri, name=row.name, scopes=tuple(scopes), policy=policy)


# The version is read beside the rows, so a copy is always filed under the version it is.
VERSION = select(ResourceCatalog.version).where(ResourceCatalog.id == 1).scalar_subquery()
_CATALOG_QUERY = select(Resource.uri, Resource.name, Resource.scopes, Resource.policy,
                        VERSION.label("version")).order_by(Resource.id)
_VERSION_QUERY = select(VERSION.label("version"))
_CACHE: dict[str | None, Catalog] = {None: Catalog(None, {})}
_CACHE_SIZE = 8


def catalog(session: Session, version: str | None) -> Catalog:
    """The resources at `version` (read by the caller's own statement): this process's copy
    when it is that version, else read once (one statement). A catalog never changed (no
    version row) holds nothing."""
    found = _CACHE.get(version)
    if found is not None:
        return found
    rows = reads.all_rows(session, _CATALOG_QUERY, {})
    read_version = rows[0].version if rows else version
    loaded = Catalog(read_version, {row.uri: spec_of(row) for row in rows})
    if len(_CACHE) >= _CACHE_SIZE:
        for old in [v for v in _CACHE if v is not None][: _CACHE_SIZE // 2]:
            del _CACHE[old]
    _CACHE[read_version] = loaded
    return loaded


def _bump(session: Session) -> None:
    """A new catalog version, in the transaction of the change it announces."""
    version = secrets.token_hex(16)
    done = session.execute(update(ResourceCatalog).where(ResourceCatalog.id == 1)
                           .values(version=version))
    if not done.rowcount:
        session.execute(insert(ResourceCatalog).values(id=1, version=version))


# --- management ----------------------------------------------------------------------------


def resource_scopes(scopes: object) -> list[str]:
    parsed = parse_scopes(scopes)  # type: ignore[arg-type]
    if not parsed:
        raise InvalidInput("a resource needs at least one scope", field="scopes")
    # keymint's own scopes stay keymint's: a token minted for other resources then never
    # holds one, so keymint's API refuses it (403) whatever host name it was minted through.
    own = [x for x in parsed if x == INTROSPECT_SCOPE or x in MANAGEMENT_SCOPES]
    if own:
        raise InvalidInput(f"'{own[0]}' is keymint's own scope, not a resource's",
                           field="scopes")
    return parsed


def _policy_text(policy: Policy | None) -> str | None:
    return None if policy is None else json.dumps(policy.as_json(), separators=(",", ":"))


def create_resource(session: Session, actor: Actor, *, uri: str, name: str,
                    scopes: object, routes: object | None = None,
                    issuer: str | None = None) -> Resource:
    """Register a resource; `routes` is a route file's decoded JSON (None: no policy).
    `issuer` (when known) keeps keymint's own `<issuer>/api/v1` from being registered."""
    uri = clean_uri(uri)
    if issuer and uri == builtin(issuer).uri:
        raise Conflict(f"{uri!r} is keymint's own API, a resource already", field="uri")
    name = clean_name(name)
    scope_list = resource_scopes(scopes)
    policy = parse_policy(routes, scope_list) if routes is not None else None
    begin_write(session)
    if session.scalar(select(Resource.id).where(Resource.uri == uri)) is not None:
        raise Conflict(f"resource {uri!r} is already registered", field="uri")
    now = utcnow()
    row = Resource(uri=uri, name=name, scopes=" ".join(scope_list),
                   policy=_policy_text(policy), created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    _bump(session)
    audit.record(session, "resource.created", actor, workspace_id=None,
                 target_type="resource", target_id=uri,
                 details={"name": name, "scopes": scope_list,
                          "routes": len(policy.routes) if policy else None,
                          "default": policy.default if policy else None})
    session.flush()
    return row


def list_resources(session: Session) -> list[Resource]:
    return list(session.scalars(select(Resource).order_by(Resource.uri)))


def get_resource(session: Session, uri: str) -> Resource:
    row = session.scalar(select(Resource).where(Resource.uri == uri))
    if row is None:
        raise NotFound(f"no resource {uri[:120]!r}", field="uri")
    return row


def served_by(introspects_for: str | None) -> str:
    """The one resource whose policy a resource server's credentials may read: its key's
    `introspects_for`. A key bound to none reads no policy with its credentials."""
    if introspects_for is None:
        raise Forbidden("these client credentials are not a resource server's (the key has "
                        "no introspects_for); use a Bearer token holding keys:read")
    return introspects_for


def check_served_by(introspects_for: str | None, uri: str, shown_as: str) -> None:
    """A resource server reads its own resource and no other: another one is as unknown to
    it as a missing one (404, the same answer)."""
    if served_by(introspects_for) != uri:
        raise NotFound(f"no resource {shown_as[:40]!r}", field="id")


def get_resource_by_id(session: Session, resource_id: str) -> Resource:
    row = None
    if resource_id.isascii() and resource_id.isdigit() and len(resource_id) <= 18:
        row = session.get(Resource, int(resource_id))
    if row is None:
        raise NotFound(f"no resource {resource_id[:40]!r}", field="id")
    return row


def update_resource(session: Session, row: Resource, actor: Actor, *, name: str | None = None,
                    scopes: object | None = None, routes: object | None = None,
                    clear_routes: bool = False) -> Resource:
    """Rename, change scopes, replace or clear the route policy (checked against the scopes)."""
    begin_write(session)
    changes: dict[str, Any] = {}
    if name is not None:
        name = clean_name(name)
        if name != row.name:
            changes["name"] = {"from": row.name, "to": name}
            row.name = name
    scope_list = row.scopes.split()
    if scopes is not None:
        new_scopes = resource_scopes(scopes)
        if new_scopes != scope_list:
            changes["scopes"] = {"from": scope_list, "to": new_scopes}
            scope_list = new_scopes
            row.scopes = " ".join(new_scopes)
    if clear_routes:
        policy_text = None
    elif routes is not None:
        policy_text = _policy_text(parse_policy(routes, scope_list))
    else:
        # The kept policy must still fit the (possibly changed) scopes.
        policy_text = (_policy_text(parse_policy(json.loads(row.policy), scope_list))
                       if row.policy else None)
    if policy_text != row.policy:
        changes["routes"] = {"from": len(json.loads(row.policy)["routes"]) if row.policy
                             else None,
                             "to": len(json.loads(policy_text)["routes"]) if policy_text
                             else None}
        row.policy = policy_text
    if changes:
        row.updated_at = utcnow()
        _bump(session)
        audit.record(session, "resource.updated", actor, workspace_id=None,
                     target_type="resource", target_id=row.uri, details=changes)
        session.flush()
    return row


def keys_restricted_to(session: Session, uri: str, now: datetime) -> list[str]:
    """client_ids of live keys restricted to, or introspecting for, `uri`."""
    rows = session.execute(select(ApiKey.client_id, ApiKey.resources, ApiKey.introspects_for,
                                  ApiKey.expires_at)
                           .where(ApiKey.revoked_at.is_(None))
                           .where((ApiKey.resources.is_not(None))
                                  | (ApiKey.introspects_for.is_not(None)))).all()
    return [r.client_id for r in rows
            if (r.expires_at is None or now < r.expires_at)
            and (uri in (r.resources or "").split() or r.introspects_for == uri)]


def delete_resource(session: Session, row: Resource, actor: Actor) -> None:
    """Unregister a resource; refused while a live key is restricted to it or serves it."""
    begin_write(session)
    holders = keys_restricted_to(session, row.uri, utcnow())
    if holders:
        shown = ", ".join(holders[:5]) + (" …" if len(holders) > 5 else "")
        raise Conflict(f"resource {row.uri!r} is still used by {len(holders)} live key(s): "
                       f"{shown}; narrow or revoke them first", field="uri")
    uri = row.uri
    session.delete(row)
    session.flush()
    _bump(session)
    audit.record(session, "resource.deleted", actor, workspace_id=None,
                 target_type="resource", target_id=uri)
    session.flush()


# --- keys and resources --------------------------------------------------------------------


def check_key_resources(cat: Catalog, issuer: str | None, resources: object,
                        scopes: list[str]) -> list[str]:
    """A key's `resources`: known URIs, and the key's scopes all defined by them (or
    `introspect`). Returns them de-duplicated in given order."""
    if not isinstance(resources, list) or not resources:
        raise InvalidInput("resources must be a non-empty list of resource URIs",
                           field="resources")
    known = cat.with_builtin(issuer) if issuer else dict(cat.registered)
    result: list[str] = []
    for uri in resources:
        uri = clean_uri(uri, field="resources")
        if uri not in known:
            raise InvalidInput(f"unknown resource {uri[:120]!r}", field="resources")
        if uri not in result:
            result.append(uri)
    defined = {INTROSPECT_SCOPE}.union(*(known[u].scopes for u in result))
    foreign = [s for s in scopes if s not in defined]
    if foreign:
        raise InvalidInput(f"scope {foreign[0]!r} is not defined by the key's resources",
                           field="scopes")
    return result


def check_introspects_for(cat: Catalog, issuer: str | None, uri: object) -> str:
    uri = clean_uri(uri, field="introspects_for")
    known = cat.with_builtin(issuer) if issuer else cat.registered
    if uri not in known:
        raise InvalidInput(f"unknown resource {uri[:120]!r}", field="introspects_for")
    return uri


def current_catalog(session: Session) -> Catalog:
    """The catalog as of now, for management paths (one small read of the version)."""
    row = reads.first_row(session, _VERSION_QUERY, {})
    return catalog(session, row.version if row else None)


# --- the token path ------------------------------------------------------------------------


def token_audience(cat: Catalog, issuer: str, key_resources: list[str] | None,
                   requested: list[str]) -> list[str]:
    """The audience of a new token: the resources named (RFC 8707 §2), each known and one the
    key may use; none named: every resource the key may use.

    Raises InvalidInput(field="resource") naming the value (the `invalid_target` error).
    """
    known = cat.with_builtin(issuer)
    usable = [u for u in key_resources if u in known] if key_resources is not None else list(known)
    if not requested:
        return usable
    audience: list[str] = []
    for uri in requested:
        uri = clean_uri(uri, field="resource")
        if uri not in known:
            raise InvalidInput(f"unknown resource {uri[:120]}", field="resource")
        if uri not in usable:
            raise InvalidInput(f"this key may not be used for {uri[:120]}", field="resource")
        if uri not in audience:
            audience.append(uri)
    return audience


def scopes_for_audience(cat: Catalog, issuer: str, audience: list[str],
                        requested: list[str] | None, held: list[str]) -> list[str]:
    """Scopes of a token for named resources: only scopes they define (and the key holds).

    `requested` None: every held scope the resources define. A requested scope none of them
    defines raises InvalidInput(field="scope") (the `invalid_scope` error).
    """
    known = cat.with_builtin(issuer)
    defined = set().union(*(known[u].scopes for u in audience))
    if requested is None:
        return [s for s in held if s in defined]
    foreign = [s for s in requested if s not in defined]
    if foreign:
        raise InvalidInput(f"Scope not defined by the requested resources: {' '.join(foreign)}",
                           field="scope")
    return requested


MAX_PATH_LEN = 2048


def route_params(method: object, path: object) -> tuple[str, str]:
    """Introspection's `method` and `path` extension parameters, checked (the query string
    of the path, if any, is not part of the route)."""
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
    if (not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH_LEN
            or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in path)):
        raise InvalidInput("path must be the request path, starting with '/'", field="path")
    return method.upper(), path.split("?", 1)[0]


def route_answer(cat: Catalog, issuer: str, resource: str, method: str, path: str,
                 scopes: list[str]) -> dict[str, Any]:
    """The route decision for a token already found active for `resource`: {"allowed":
    bool}, plus "missing_scope" (the scopes any one of which would allow it) when denied for
    want of a scope."""
    spec = cat.with_builtin(issuer).get(resource)
    # A resource deleted since the caller's key was bound to it routes nothing.
    decision = decide(spec.policy, method, path, scopes) if spec else Decision(False)
    answer: dict[str, Any] = {"allowed": decision.allowed}
    if decision.missing_scope:
        answer["missing_scope"] = decision.missing_scope
    return answer
