"""API keys: creation within policy, scopes, expiry, revocation and secret rotation."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import limits
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, joinedload, selectinload

from app import credentials
from app.clock import isoformat, utcnow
from app.models import (
    AccessToken,
    ApiKey,
    KeySecret,
    Membership,
    ResourceCatalog,
    User,
    UserStatus,
    Workspace,
)
from app.services import audit, pagination, reads, token_counts, webhooks
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput, NotFound
from app.transactions import locked

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), at most 64 here. Written so
# that Python and JSON Schema (the management API's published `pattern`) read it alike.
SCOPE_PATTERN = r"^[!#-\[\]-~]{1,64}$"
_SCOPE_TOKEN = re.compile(SCOPE_PATTERN)
MAX_SCOPES = 50
MAX_NAME_LEN = 200
DEFAULT_GRACE_PERIOD = 86400
MAX_GRACE_PERIOD = 7 * 86400
MANAGEMENT_SCOPES = frozenset(
    {"keys:read", "keys:write", "audit:read", "members:read", "members:write",
     "webhooks:read", "webhooks:write"}
)
INTROSPECT_SCOPE = "introspect"
MAX_RATE_LIMIT_LEN = 64


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    client_secret: str


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    key: ApiKey
    client_secret: str
    previous_expires_at: datetime | None


def parse_scopes(scopes: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Validate scope tokens per RFC 6749 §3.3; returns them de-duplicated in given order."""
    if scopes is None:
        return []
    items = scopes.split(" ") if isinstance(scopes, str) else list(scopes)
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput("scopes must be strings", field="scopes")
        if item == "" and isinstance(scopes, str):
            continue
        if not _SCOPE_TOKEN.match(item):
            raise InvalidInput(
                f"invalid scope {item!r}: a scope is 1-64 printable ASCII characters "
                "without spaces, quotes or backslashes", field="scopes")
        if item not in result:
            result.append(item)
    if len(result) > MAX_SCOPES:
        raise InvalidInput(f"a key holds at most {MAX_SCOPES} scopes", field="scopes")
    return result


def has_control_characters(text: str) -> bool:
    """C0 controls and DEL: what a key name (and so a legacy label, its future name) refuses."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def clean_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name must not be empty", field="name")
    if len(name) > MAX_NAME_LEN:
        raise InvalidInput(f"name is longer than {MAX_NAME_LEN} characters", field="name")
    if has_control_characters(name):
        raise InvalidInput("name must not contain control characters", field="name")
    return name


def clean_rate_limit(rate_limit: str | None) -> str | None:
    """A key's own request limit in the `limits` notation ("1000 per minute", "50/second");
    None or "" clears it (the server's defaults apply)."""
    if rate_limit is None:
        return None
    if not isinstance(rate_limit, str):
        raise InvalidInput("rate_limit must be a string like '1000 per minute' or null",
                           field="rate_limit")
    rate_limit = rate_limit.strip()
    if not rate_limit:
        return None
    problem = f"rate_limit must be one limit like '1000 per minute', got {rate_limit[:80]!r}"
    if len(rate_limit) > MAX_RATE_LIMIT_LEN:
        raise InvalidInput(problem, field="rate_limit")
    try:
        item = limits.parse(rate_limit)
    except ValueError:
        raise InvalidInput(problem, field="rate_limit") from None
    if item.amount < 1:
        raise InvalidInput("rate_limit must allow at least one request", field="rate_limit")
    return rate_limit


def resolve_expiry(
    workspace: Workspace,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    use_default: bool = True,
) -> datetime | None:
    """The expiry a key gets: explicit, or the workspace default; always within policy."""
    if expires_at is not None and expires_in_days is not None:
        raise InvalidInput("give expires_at or expires_in_days, not both", field="expires_at")
    if expires_in_days is not None:
        if isinstance(expires_in_days, bool) or not 1 <= expires_in_days <= 36500:
            raise InvalidInput("expires_in_days must be between 1 and 36500",
                               field="expires_in_days")
        expires_at = now + timedelta(days=expires_in_days)
    if expires_at is None and use_default:
        days = workspace.default_key_lifetime_days or workspace.max_key_lifetime_days
        if days:
            expires_at = now + timedelta(days=days)
    if expires_at is None:
        if workspace.max_key_lifetime_days:
            raise InvalidInput(
                f"workspace policy requires an expiry within "
                f"{workspace.max_key_lifetime_days} days", field="expires_at")
        return None
    if expires_at.tzinfo is None:
        raise InvalidInput("expires_at needs a timezone, e.g. 2030-01-01T00:00:00Z",
                           field="expires_at")
    if expires_at <= now:
        raise InvalidInput("expires_at must be in the future", field="expires_at")
    if workspace.max_key_lifetime_days:
        limit = now + timedelta(days=workspace.max_key_lifetime_days)
        if expires_at > limit:
            raise InvalidInput(
                f"expires_at is beyond the workspace's maximum key lifetime of "
                f"{workspace.max_key_lifetime_days} days", field="expires_at")
    return expires_at


def _public_facts(key: ApiKey) -> dict[str, str | None]:
    """What a webhook may say about a key: ids, its name and times; never a secret."""
    return {"client_id": key.client_id, "name": key.name, "user_id": str(key.user_id),
            "expires_at": isoformat(key.expires_at)}


def _add_secret(session: Session, key: ApiKey, now: datetime) -> str:
    secret = credentials.new_secret()
    session.add(KeySecret(key_id=key.id, digest=credentials.digest(secret),
                          hint=credentials.hint(secret), created_at=now))
    return secret


def create_key(
    session: Session,
    workspace: Workspace,
    user: User,
    actor: Actor,
    *,
    name: str,
    scopes: str | list[str] | None,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    rate_limit: str | None = None,
    resources: list[str] | None = None,
    introspects_for: str | None = None,
    issuer: str | None = None,
) -> CreatedKey:
    """A new key; `resources` restricts it (its scopes must be theirs), `introspects_for`
    makes it that resource's server. `issuer` names keymint's own API resource."""
    now = utcnow()
    name = clean_name(name)
    scope_list = parse_scopes(scopes)
    if resources is not None or introspects_for is not None:
        from app.services import resources as resource_service

        cat = resource_service.current_catalog(session)
        if resources is not None:
            resources = resource_service.check_key_resources(cat, issuer, resources, scope_list)
        if introspects_for is not None:
            introspects_for = resource_service.check_introspects_for(cat, issuer,
                                                                     introspects_for)
    rate_limit = clean_rate_limit(rate_limit)
    if not user.is_active:
        raise InvalidInput(f"user {user.email} is disabled", field="user")
    membership = session.scalar(
        select(Membership).where(Membership.workspace_id == workspace.id,
                                 Membership.user_id == user.id))
    if membership is None:
        raise InvalidInput(f"{user.email} is not a member of {workspace.slug}", field="user")
    expiry = resolve_expiry(workspace, now, expires_at=expires_at,
                            expires_in_days=expires_in_days)
    key = ApiKey(client_id=credentials.new_client_id(), user_id=user.id,
                 workspace_id=workspace.id, name=name, scopes=" ".join(scope_list),
                 created_at=now, expires_at=expiry, rate_limit=rate_limit,
                 resources=" ".join(resources) if resources is not None else None,
                 introspects_for=introspects_for)
    session.add(key)
    session.flush()
    secret = _add_secret(session, key, now)
    audit.record(session, "key.created", actor, workspace_id=workspace.id,
                 target_type="key", target_id=key.client_id,
                 details={"name": name, "scopes": scope_list, "user": user.id,
                          "expires_at": expiry.isoformat() if expiry else None,
                          "rate_limit": rate_limit,
                          **({"resources": resources} if resources is not None else {}),
                          **({"introspects_for": introspects_for} if introspects_for
                             else {})})
    webhooks.emit(session, "key.created", workspace.id, {**_public_facts(key),
                                                         "scopes": scope_list})
    session.flush()
    return CreatedKey(key=key, client_secret=secret)


def get_key(session: Session, client_id: str, *, workspace_id: int | None = None,
            lock: bool = False) -> ApiKey:
    if not credentials.is_client_id(client_id):
        raise NotFound(f"no key {client_id!r}", field="client_id")
    query = select(ApiKey).where(ApiKey.client_id == client_id)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    if lock:
        query = locked(session, query)
    key = session.scalar(query)
    if key is None:
        raise NotFound(f"no key {client_id!r}", field="client_id")
    return key


def workspace_of(session: Session, client_id: str) -> int | None:
    """The workspace of the key `client_id`, revoked or not; None for an unknown id."""
    return session.scalar(select(ApiKey.workspace_id).where(ApiKey.client_id == client_id))


def _revoke_tokens_of_keys(session: Session, key_ids, now: datetime, reason: str) -> int:
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.key_id.in_(key_ids), AccessToken.revoked_at.is_(None),
               AccessToken.expires_at > now)
        .values(revoked_at=now, revoked_reason=reason)
    )
    return result.rowcount or 0


def revoke_key(session: Session, key: ApiKey, actor: Actor, reason: str = "revoked") -> ApiKey:
    """Revoke a key with every secret and token at once; the key row stays readable."""
    key = get_key(session, key.client_id, lock=True)
    if key.revoked_at is not None:
        return key
    now = utcnow()
    key.revoked_at = now
    key.revoked_reason = reason
    session.execute(update(KeySecret).where(KeySecret.key_id == key.id,
                                            KeySecret.revoked_at.is_(None))
                    .values(revoked_at=now))
    tokens = _revoke_tokens_of_keys(session, [key.id], now, "key_revoked")
    token_counts.note(session, token_counts.REVOKED, "key_revoked", tokens)
    audit.record(session, "key.revoked", actor, workspace_id=key.workspace_id,
                 target_type="key", target_id=key.client_id,
                 details={"reason": reason, "tokens_revoked": tokens})
    webhooks.emit(session, "key.revoked", key.workspace_id, {**_public_facts(key),
                                                             "reason": reason})
    session.flush()
    return key


def revoke_keys_of_member(session: Session, workspace_id: int, user_id: int, actor: Actor) -> int:
    keys = session.scalars(select(ApiKey).where(
        ApiKey.workspace_id == workspace_id, ApiKey.user_id == user_id,
        ApiKey.revoked_at.is_(None))).all()
    for key in keys:
        revoke_key(session, key, actor, reason="member_removed")
    return len(keys)


def revoke_tokens(session: Session, key: ApiKey, actor: Actor) -> int:
    """Revoke every live token of a key; the key and its secrets stay."""
    count = _revoke_tokens_of_keys(session, [key.id], utcnow(), "bulk_revoked")
    token_counts.note(session, token_counts.REVOKED, "bulk_revoked", count)
    audit.record(session, "key.tokens_revoked", actor, workspace_id=key.workspace_id,
                 target_type="key", target_id=key.client_id, details={"count": count})
    session.flush()
    return count


def rotate_secret(
    session: Session, key: ApiKey, actor: Actor, grace_period: int = DEFAULT_GRACE_PERIOD
) -> RotatedSecret:
    """New current secret; the old one lives `grace_period` seconds, older ones end now."""
    if isinstance(grace_period, bool) or not 0 <= grace_period <= MAX_GRACE_PERIOD:
        raise InvalidInput(f"grace_period must be between 0 and {MAX_GRACE_PERIOD} seconds",
                           field="grace_period")
    key = get_key(session, key.client_id, lock=True)  # serialises concurrent rotations
    now = utcnow()
    if key.revoked_at is not None:
        raise Conflict("a revoked key cannot be rotated", field="client_id")
    if key.is_expired(now):
        raise Conflict("an expired key cannot be rotated", field="client_id")
    live = session.scalars(select(KeySecret).where(
        KeySecret.key_id == key.id, KeySecret.revoked_at.is_(None),
        or_(KeySecret.expires_at.is_(None), KeySecret.expires_at > now))
        .execution_options(populate_existing=True)).all()
    previous_end: datetime | None = None
    for secret in live:
        if secret.expires_at is None and grace_period > 0:
            end = now + timedelta(seconds=grace_period)
            if key.expires_at is not None:
                end = min(end, key.expires_at)
            secret.expires_at = end
            previous_end = end
        else:
            secret.revoked_at = now
            end = now
        # A token never outlives the secret that minted it.
        session.execute(update(AccessToken)
                        .where(AccessToken.secret_id == secret.id, AccessToken.expires_at > end)
                        .values(expires_at=end))
    new_secret = _add_secret(session, key, now)
    audit.record(session, "key.secret_rotated", actor, workspace_id=key.workspace_id,
                 target_type="key", target_id=key.client_id,
                 details={"grace_period": grace_period,
                          "previous_expires_at": previous_end.isoformat() if previous_end
                          else None})
    webhooks.emit(session, "key.secret_rotated", key.workspace_id,
                  {**_public_facts(key), "previous_secret_expires_at": isoformat(previous_end)})
    session.flush()
    return RotatedSecret(key=key, client_secret=new_secret, previous_expires_at=previous_end)


def update_key(
    session: Session,
    key: ApiKey,
    workspace: Workspace,
    actor: Actor,
    *,
    name: str | None = None,
    scopes: str | list[str] | None = None,
    expires_at: datetime | type[Ellipsis] | None = ...,
    expires_in_days: int | None = None,
    rate_limit: str | type[Ellipsis] | None = ...,
    resources: list[str] | None = None,
    introspects_for: str | None = None,
    issuer: str | None = None,
) -> ApiKey:
    """Rename, narrow scopes (never widen), move the expiry within policy, set the rate limit.

    `expires_at=None` removes the expiry (only where the workspace has no maximum lifetime);
    `expires_in_days` counts from now; `rate_limit=None` clears the key's own limit. An
    expired key stays expired: it can be renamed or
    narrowed, but bringing it back to life is a new key's job.
    """
    now = utcnow()
    if key.revoked_at is not None:
        raise Conflict("a revoked key cannot be changed", field="client_id")
    if expires_in_days is not None:
        if expires_at is not ...:
            raise InvalidInput("give expires_at or expires_in_days, not both",
                               field="expires_at")
        expires_at = resolve_expiry(workspace, now, expires_in_days=expires_in_days)
    if expires_at is not ... and key.is_expired(now):
        raise Conflict("an expired key's expiry cannot be changed; create a new key",
                       field="expires_at")
    changes: dict[str, object] = {}
    if name is not None:
        name = clean_name(name)
        if name != key.name:
            changes["name"] = {"from": key.name, "to": name}
            key.name = name
    if scopes is not None:
        new_scopes = parse_scopes(scopes)
        widened = sorted(set(new_scopes) - set(key.scope_list))
        if widened:
            raise InvalidInput(f"scopes can only be narrowed; not held: {' '.join(widened)}",
                               field="scopes")
        if new_scopes != key.scope_list:
            changes["scopes"] = {"from": key.scope_list, "to": new_scopes}
            key.scopes = " ".join(new_scopes)
            _narrow_live_tokens(session, key, set(new_scopes), now)
    if resources is not None:
        _narrow_resources(session, key, resources, issuer, changes, now)
    if introspects_for is not None:
        _bind_introspection(session, key, introspects_for, issuer, changes)
    if rate_limit is not ...:
        new_limit = clean_rate_limit(rate_limit)  # type: ignore[arg-type]
        if new_limit != key.rate_limit:
            changes["rate_limit"] = {"from": key.rate_limit, "to": new_limit}
            key.rate_limit = new_limit
    if expires_at is not ...:
        new_expiry = resolve_expiry(workspace, now, expires_at=expires_at, use_default=False)
        if new_expiry != key.expires_at:
            changes["expires_at"] = {
                "from": key.expires_at.isoformat() if key.expires_at else None,
                "to": new_expiry.isoformat() if new_expiry else None}
            key.expires_at = new_expiry
            if new_expiry is not None:
                session.execute(update(AccessToken)
                                .where(AccessToken.key_id == key.id,
                                       AccessToken.expires_at > new_expiry)
                                .values(expires_at=new_expiry))
    if changes:
        audit.record(session, "key.updated", actor, workspace_id=key.workspace_id,
                     target_type="key", target_id=key.client_id, details=changes)
        session.flush()
    return key


def _narrow_resources(session: Session, key: ApiKey, resources: list[str], issuer: str | None,
                      changes: dict[str, object], now: datetime) -> None:
    """Restrict a key to fewer resources (never more); tokens for a dropped one end."""
    from app.services import resources as resource_service

    cat = resource_service.current_catalog(session)
    new = resource_service.check_key_resources(cat, issuer, resources, key.scope_list)
    old = key.resource_list
    if old is not None:
        widened = [u for u in new if u not in old]
        if widened:
            raise InvalidInput(f"resources can only be narrowed; not held: {widened[0]}",
                               field="resources")
    if old is not None and new == old:
        return
    changes["resources"] = {"from": old, "to": new}
    key.resources = " ".join(new)
    kept = set(new)
    live = session.scalars(select(AccessToken).where(
        AccessToken.key_id == key.id, AccessToken.revoked_at.is_(None),
        AccessToken.expires_at > now)).all()
    for token in live:
        # A token without an audience predates resources and was good everywhere.
        if not token.audience or not set(token.audience.split()) <= kept:
            token.revoked_at = now
            token.revoked_reason = "resources_narrowed"


def _bind_introspection(session: Session, key: ApiKey, uri: str, issuer: str | None,
                        changes: dict[str, object]) -> None:
    """Bind an introspecting key to its resource; unbinding or moving it would widen it."""
    from app.services import resources as resource_service

    uri = resource_service.check_introspects_for(resource_service.current_catalog(session),
                                                 issuer, uri)
    if key.introspects_for == uri:
        return
    if key.introspects_for is not None:
        raise InvalidInput("introspects_for is already set; it cannot be moved or cleared "
                           "(create a new key)", field="introspects_for")
    changes["introspects_for"] = {"from": None, "to": uri}
    key.introspects_for = uri


def _narrow_live_tokens(session: Session, key: ApiKey, allowed: set[str], now: datetime) -> None:
    """Tokens holding a scope the key no longer has are revoked; no token keeps more."""
    live = session.scalars(select(AccessToken).where(
        AccessToken.key_id == key.id, AccessToken.revoked_at.is_(None),
        AccessToken.expires_at > now)).all()
    for token in live:
        if not set(token.scopes.split()) <= allowed:
            token.revoked_at = now
            token.revoked_reason = "scopes_narrowed"


# What app.serialize.key_json reads of each key, loaded with the keys: one joined statement
# plus one for all their secrets, whatever the number of keys (not three lazy loads per key).
_FOR_JSON = (joinedload(ApiKey.user), joinedload(ApiKey.workspace),
             selectinload(ApiKey.secrets))


def _keys_query(now: datetime, workspace_id: int | None, user_id: int | None,
                state: str | None, expiring_within: timedelta | None):
    query = select(ApiKey).options(*_FOR_JSON).order_by(ApiKey.id.desc())
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    query = query.where(state_filter(state, now))
    if expiring_within is not None:
        query = query.where(ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_not(None),
                            ApiKey.expires_at > now, ApiKey.expires_at <= now + expiring_within)
    return query


def list_keys(session: Session, *, workspace_id: int | None = None,
              user_id: int | None = None, state: str | None = None,
              expiring_within: timedelta | None = None) -> list[ApiKey]:
    """Every matching key, newest first, or soonest expiry first with `expiring_within`
    (the CLI's view; the API pages with page_keys)."""
    query = _keys_query(utcnow(), workspace_id, user_id, state, expiring_within)
    if expiring_within is not None:
        query = query.order_by(None).order_by(ApiKey.expires_at, ApiKey.id)
    return list(session.scalars(query))


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
CURSOR_KIND = "keys"
_BAD_CURSOR = "cursor is not one this server issued; start again without it"


@dataclass(frozen=True, slots=True)
class KeyPage:
    keys: list[ApiKey]
    next_cursor: str | None


def page_keys(session: Session, *, workspace_id: int, user_id: int | None = None,
              state: str | None = None, expiring_within: timedelta | None = None,
              cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> KeyPage:
    """One page of keys, newest first, continuing after `cursor`."""
    if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    query = _keys_query(utcnow(), workspace_id, user_id, state, expiring_within)
    if cursor is not None:
        before = pagination.decode_cursor(CURSOR_KIND, cursor, rejection=_BAD_CURSOR)
        query = query.where(ApiKey.id < before)
    rows, last_id = pagination.cut(session.scalars(query.limit(limit + 1)).all(), limit)
    return KeyPage(keys=rows, next_cursor=(pagination.encode_cursor(CURSOR_KIND, last_id)
                                           if last_id is not None else None))


def user_id_for_filter(session: Session, user: str) -> int:
    """A `user` filter given as a user id or an email; an unknown user matches no key (0)."""
    user = user.strip()
    if user.isascii() and user.isdigit():
        return int(user) if len(user) <= pagination.MAX_ID_DIGITS else 0
    found = session.scalar(select(User.id).where(User.email == user.lower()))
    return found or 0


def state_filter(state: str | None, now: datetime):
    if state is None:
        return and_(True)
    if state == "active":
        return and_(ApiKey.revoked_at.is_(None),
                    or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    if state == "expired":
        return and_(ApiKey.revoked_at.is_(None), ApiKey.expires_at <= now)
    if state == "revoked":
        return ApiKey.revoked_at.is_not(None)
    raise InvalidInput("state must be one of active, expired, revoked", field="state")


# --- the hot path -------------------------------------------------------------------------


@dataclass(slots=True)
class SecretRow:
    id: int
    digest: str = field(repr=False)  # never in a repr, a log line or a traceback
    expires_at: datetime | None = None


@dataclass(slots=True)
class KeyCredential:
    """Everything client authentication needs about a key, read in one query (no ORM)."""

    id: int
    client_id: str
    user_id: int
    workspace_id: int
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    user_email: str
    role: str | None
    token_ttl: int | None
    secrets: list[SecretRow]
    rate_limit: str | None = None
    token_format: str = "opaque"  # noqa: S105 (the workspace's TokenFormat policy)
    resources: list[str] | None = None  # None: unrestricted
    introspects_for: str | None = None
    catalog_version: str | None = None  # the resource catalog's version, read in the same row


# Built once: the hot path binds parameters into a ready statement instead of rebuilding it.
CREDENTIAL_QUERY = (
    select(ApiKey.id, ApiKey.client_id, ApiKey.user_id, ApiKey.workspace_id, ApiKey.scopes,
           ApiKey.expires_at, ApiKey.last_used_at, ApiKey.rate_limit, User.email,
           Membership.role, ApiKey.resources, ApiKey.introspects_for,
           select(ResourceCatalog.version).where(ResourceCatalog.id == 1)
           .scalar_subquery().label("catalog_version"),
           KeySecret.id.label("secret_id"), KeySecret.digest,
           KeySecret.expires_at.label("secret_expires_at"), Workspace.token_ttl_seconds,
           Workspace.token_format)
    .join(User, User.id == ApiKey.user_id)
    .join(Workspace, Workspace.id == ApiKey.workspace_id)
    .join(Membership, and_(Membership.user_id == ApiKey.user_id,
                           Membership.workspace_id == ApiKey.workspace_id))
    .join(KeySecret, and_(KeySecret.key_id == ApiKey.id, KeySecret.revoked_at.is_(None)))
    .where(ApiKey.client_id == bindparam("client_id"), ApiKey.revoked_at.is_(None),
           User.status == UserStatus.ACTIVE.value)
)


def load_credential(session: Session | Engine, client_id: str,
                    now: datetime) -> KeyCredential | None:
    """The key behind `client_id` if it may authenticate now, with its live secrets.

    One indexed query: key, owner, membership, workspace policy and unrevoked secrets, run as
    Core outside any transaction (services.reads; no ORM objects). Revoked or expired keys,
    disabled owners and removed memberships yield None, exactly like an unknown id.
    """
    if not credentials.is_client_id(client_id):
        return None
    return credential_from_rows(_CREDENTIAL.rows(session, {"client_id": client_id}), now)


_CREDENTIAL = reads.HotRead(CREDENTIAL_QUERY)


def credential_from_rows(rows, now: datetime) -> KeyCredential | None:
    """The KeyCredential of CREDENTIAL_QUERY's rows (one per unrevoked secret), if usable now."""
    if not rows:
        return None
    first = rows[0]
    if first.expires_at is not None and now >= first.expires_at:
        return None
    live = [SecretRow(r.secret_id, r.digest, r.secret_expires_at) for r in rows
            if r.secret_expires_at is None or now < r.secret_expires_at]
    if not live:
        return None
    return KeyCredential(id=first.id, client_id=first.client_id, user_id=first.user_id,
                         workspace_id=first.workspace_id, scopes=first.scopes.split(),
                         expires_at=first.expires_at, last_used_at=first.last_used_at,
                         user_email=first.email, role=first.role,
                         token_ttl=first.token_ttl_seconds, secrets=live,
                         rate_limit=first.rate_limit, token_format=first.token_format,
                         resources=None if first.resources is None else first.resources.split(),
                         introspects_for=first.introspects_for,
                         catalog_version=first.catalog_version)


def match_secret(cred: KeyCredential | None, presented: str) -> SecretRow | None:
    """Constant-time check of a presented secret against every live secret of the key.

    An unknown key compares against a dummy digest so both paths cost the same.
    """
    well_formed = credentials.is_secret(presented)
    presented_digest = credentials.digest(presented if well_formed else "")
    candidates = cred.secrets if cred is not None else []
    found = None
    for secret in candidates or [SecretRow(0, credentials.DUMMY_SECRET_DIGEST, None)]:
        if hmac.compare_digest(secret.digest, presented_digest) and well_formed and cred:
            found = secret
    return found


def use_is_due(cred: KeyCredential, now: datetime, interval: int) -> bool:
    """Whether this use of the key is to be recorded (mark_used writes it)."""
    return cred.last_used_at is None or (now - cred.last_used_at).total_seconds() >= interval


_MARK_USED = (update(ApiKey).where(ApiKey.id == bindparam("key_id"))
              .values(last_used_at=bindparam("last_used_at"),
                      last_used_ip=bindparam("last_used_ip")))


def mark_used(session: Session, cred: KeyCredential, now: datetime, ip: str | None,
              interval: int) -> None:
    """Record last use at most once per `interval` seconds per key (not a write per request)."""
    if not use_is_due(cred, now, interval):
        return
    session.connection().execute(_MARK_USED, {"key_id": cred.id, "last_used_at": now,
                                              "last_used_ip": (ip or None) and ip[:64]})

