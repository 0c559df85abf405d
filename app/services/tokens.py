"""Access tokens: issuance, lookup for introspection, revocation, rotation and purge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app import credentials
from app.clock import epoch, utcnow
from app.durability import RELAX_IN_STATEMENT, relax_commit_durability
from app.models import AccessToken, ApiKey, KeySecret, Membership, User, UserStatus, Workspace
from app.services import audit, reads, signing_keys, token_counts, webhooks
from app.services import keys as key_service
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput, NotFound
from app.services.keys import KeyCredential, SecretRow


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What issuance hands back: the plaintext token, shown once and never stored."""

    access_token: str
    jti: str
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime
    row_id: int
    audience: list[str] | None = None


@dataclass(slots=True)
class TokenInfo:
    """A looked-up token joined with the facts that decide whether it is active right now.

    The one read model of a token: introspection, revocation, rotation and the Bearer check
    all take it, and is_active() is the one definition of an active token.
    """

    id: int
    jti: str
    key_id: int
    client_id: str
    user_id: int
    user_email: str
    workspace_id: int
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    replaced_by_id: int | None
    key_revoked: bool
    key_expires_at: datetime | None
    user_active: bool
    is_member: bool
    secret_revoked: bool = False
    secret_expires_at: datetime | None = None
    # The scopes the token's key holds now (an empty set, the default, makes it inactive).
    key_scopes: frozenset[str] = frozenset()
    role: str | None = None  # the owner's role in the workspace now (None: not a member)
    # The resource URIs the token is for (RFC 8707); empty for tokens minted before resources.
    audience: list[str] = field(default_factory=list)
    # The resources its key is restricted to now (None: unrestricted).
    key_resources: frozenset[str] | None = None
    # Filled in by lookup(with_workspace=True) only:
    workspace_slug: str = ""
    workspace_name: str = ""

    def secret_live(self, now: datetime) -> bool:
        """The secret that minted the token still works (read now, not copied at issuance)."""
        return not self.secret_revoked and (
            self.secret_expires_at is None or now < self.secret_expires_at)

    def scopes_held(self) -> bool:
        """Every scope of the token is still one its key holds.

        A key narrowed while a token was being minted (issue #15) can leave a live token with
        a dropped scope: such a token is inactive as a whole rather than quietly trimmed, so
        no caller ever acts on a scope list that differs from the one it was issued.
        """
        return self.key_scopes.issuperset(self.scopes)

    def resources_held(self) -> bool:
        """Every resource of the token's audience is still one its key may use (a key
        narrowed while the token was minted, as with scopes). A token without an audience
        (minted before resources) was good everywhere: once its key is restricted, it is not
        one the key could mint any more."""
        if self.key_resources is None:
            return True
        return bool(self.audience) and self.key_resources.issuperset(self.audience)

    def is_for(self, resource: str) -> bool:
        return resource in self.audience

    def is_active(self, now: datetime) -> bool:
        """Unrevoked, unexpired, and so is everything it stands on now: its key (and the key
        still holds every scope of the token), the secret that minted it, its owner and the
        owner's membership."""
        return (
            self.revoked_at is None
            and now < self.expires_at
            and not self.key_revoked
            and (self.key_expires_at is None or now < self.key_expires_at)
            and self.secret_live(now)
            and self.user_active
            and self.is_member
            and self.scopes_held()
            and self.resources_held()
        )


@dataclass(frozen=True, slots=True)
class JwtSigning:
    """How to mint a JWT access token (RFC 9068) instead of an opaque one."""

    key: signing_keys.LoadedKey
    issuer: str
    audience: str | list[str]


def jwt_audience(issuer: str) -> str | list[str]:
    """The `aud` of a JWT access token that names no resource: the issuer itself (a token
    with an audience carries its resources instead; see issue())."""
    return issuer


def _jwt_aud(audience: list[str]) -> str | list[str]:
    # RFC 7519 §4.1.3: one audience may be a plain string, which every JWT library accepts.
    return audience[0] if len(audience) == 1 else list(audience)


def is_presented_token(value: str | None) -> bool:
    """Could be a keymint access token: an `at_…` with a good checksum, or a JWT access token
    keymint could have signed. Anything else is answered without a query."""
    return credentials.is_access_token(value) or signing_keys.is_access_jwt(value)


class ReusedToken(Conflict):
    """An already rotated token came back: its whole lineage has been revoked."""


def token_lifetime_end(
    now: datetime, ttl: int, key_expires_at: datetime | None, secret_expires_at: datetime | None
) -> datetime:
    """A token never outlives its key, nor the secret that minted it."""
    end = now + timedelta(seconds=ttl)
    for limit in (key_expires_at, secret_expires_at):
        if limit is not None and limit < end:
            end = limit
    return end


_INSERT_TOKEN = insert(AccessToken).returning(AccessToken.id)
_INSERT_TOKEN_RELAXED = insert(AccessToken).returning(AccessToken.id, RELAX_IN_STATEMENT)


def issue(
    session: Session,
    cred: KeyCredential,
    secret: SecretRow | None,
    scopes: list[str],
    ttl: int,
    actor: Actor,
    *,
    rotated_from_id: int | None = None,
    audit_action: str = "token.issued",
    durable: bool = True,
    jwt: JwtSigning | None = None,
    audience: list[str] | None = None,
) -> IssuedToken:
    """Add a token row and its audit event; with `jwt`, the token is a signed JWT (stored by
    its digest like any other, so it is listed, revoked and introspected the same way).

    durable=False lets a plain issuance commit without waiting for the WAL flush on
    PostgreSQL: losing it in a crash only loses a token that then never works. Anything that
    also retires something (rotation) must stay durable.
    """
    now = utcnow()
    relax_in_insert = not durable and relax_commit_durability(session, in_next_write=True)
    jti = credentials.new_token_id()
    secret_end = secret.expires_at if secret else None
    expires_at = token_lifetime_end(now, ttl, cred.expires_at, secret_end)
    details: dict[str, object] = {}
    if jwt is None:
        plaintext = credentials.new_access_token()
    else:
        # Never past the instant its key is unpublished: no resource server could check it.
        if jwt.key.published_until is not None and jwt.key.published_until < expires_at:
            expires_at = jwt.key.published_until
        plaintext = signing_keys.sign(jwt.key, {
            "iss": jwt.issuer, "sub": str(cred.user_id),
            "aud": _jwt_aud(audience) if audience else jwt.audience,
            "client_id": cred.client_id, "scope": " ".join(scopes), "jti": jti,
            "iat": epoch(now), "exp": epoch(expires_at),
            "workspace_id": str(cred.workspace_id)})
        details = {"format": "jwt", "kid": jwt.key.kid}
    statement = _INSERT_TOKEN_RELAXED if relax_in_insert else _INSERT_TOKEN
    row_id = session.connection().execute(statement, {
        "digest": credentials.digest(plaintext), "jti": jti, "key_id": cred.id,
        "secret_id": secret.id if secret else None, "user_id": cred.user_id,
        "workspace_id": cred.workspace_id, "scopes": " ".join(scopes), "issued_at": now,
        "expires_at": expires_at, "rotated_from_id": rotated_from_id,
        "audience": " ".join(audience) if audience else None,
    }).scalar_one()
    token_counts.note(session, token_counts.ISSUED,
                      "client_credentials" if rotated_from_id is None else "rotation")
    audit.append(session, audit_action, actor, workspace_id=cred.workspace_id,
                 target_type="token", target_id=jti,
                 details={"scopes": scopes, "expires_at": expires_at.isoformat(),
                          **({"audience": audience} if audience else {}),
                          **({"rotated_from": rotated_from_id} if rotated_from_id else {}),
                          **details})
    return IssuedToken(access_token=plaintext, jti=jti, scopes=scopes, issued_at=now,
                       expires_at=expires_at, row_id=row_id, audience=audience)


# The token's columns, labelled tok_*: the same names read a token row alone (the Bearer
# check) or beside the caller's credential in one row (introspection, revocation, rotation).
_TOKEN_COLUMNS = (
    AccessToken.id.label("tok_id"), AccessToken.jti.label("tok_jti"),
    AccessToken.key_id.label("tok_key_id"), ApiKey.client_id.label("tok_client_id"),
    AccessToken.user_id.label("tok_user_id"), User.email.label("tok_email"),
    AccessToken.workspace_id.label("tok_workspace_id"), AccessToken.scopes.label("tok_scopes"),
    AccessToken.issued_at.label("tok_issued_at"), AccessToken.expires_at.label("tok_expires_at"),
    AccessToken.revoked_at.label("tok_revoked_at"),
    AccessToken.replaced_by_id.label("tok_replaced_by_id"),
    ApiKey.revoked_at.label("tok_key_revoked_at"), ApiKey.expires_at.label("tok_key_expires_at"),
    ApiKey.scopes.label("tok_key_scopes"), User.status.label("tok_user_status"),
    Membership.id.label("tok_membership_id"), Membership.role.label("tok_role"),
    KeySecret.revoked_at.label("tok_secret_revoked_at"),
    KeySecret.expires_at.label("tok_secret_expires_at"),
    AccessToken.audience.label("tok_audience"), ApiKey.resources.label("tok_key_resources"),
)
_LOOKUP_QUERY = (
    select(*_TOKEN_COLUMNS)
    .select_from(AccessToken)
    .join(ApiKey, ApiKey.id == AccessToken.key_id)
    .join(User, User.id == AccessToken.user_id)
    .outerjoin(KeySecret, KeySecret.id == AccessToken.secret_id)
    .outerjoin(Membership, and_(Membership.user_id == AccessToken.user_id,
                                Membership.workspace_id == AccessToken.workspace_id))
    .where(AccessToken.digest == bindparam("digest"))
)
# A Bearer request also gets the workspace's slug and name from the same row (one more
# primary-key join), so GET /api/v1/me needs no second query.
_BEARER_QUERY = (_LOOKUP_QUERY.add_columns(Workspace.slug.label("tok_workspace_slug"),
                                           Workspace.name.label("tok_workspace_name"))
                 .join(Workspace, Workspace.id == AccessToken.workspace_id))
# The caller's credential (one row per unrevoked secret of its key) and the presented token,
# decided by one statement: the token lookup is a derived table joined to every credential
# row, so an unknown client yields no row at all and a known one carries the token beside it.
_TOKEN_TABLE = _LOOKUP_QUERY.subquery("tok")
_CALLER_AND_TOKEN_QUERY = (key_service.CREDENTIAL_QUERY.add_columns(*_TOKEN_TABLE.c)
                           .outerjoin(_TOKEN_TABLE, true()))
_LOOKUP = reads.HotRead(_LOOKUP_QUERY)
_BEARER = reads.HotRead(_BEARER_QUERY)
_CALLER_AND_TOKEN = reads.HotRead(_CALLER_AND_TOKEN_QUERY)


def _token_info(row) -> TokenInfo:
    return TokenInfo(
        id=row.tok_id, jti=row.tok_jti, key_id=row.tok_key_id, client_id=row.tok_client_id,
        user_id=row.tok_user_id, user_email=row.tok_email, workspace_id=row.tok_workspace_id,
        scopes=row.tok_scopes.split(), issued_at=row.tok_issued_at,
        expires_at=row.tok_expires_at, revoked_at=row.tok_revoked_at,
        replaced_by_id=row.tok_replaced_by_id, key_revoked=row.tok_key_revoked_at is not None,
        key_expires_at=row.tok_key_expires_at,
        user_active=row.tok_user_status == UserStatus.ACTIVE.value,
        is_member=row.tok_membership_id is not None,
        secret_revoked=row.tok_secret_revoked_at is not None,
        secret_expires_at=row.tok_secret_expires_at,
        key_scopes=frozenset(row.tok_key_scopes.split()), role=row.tok_role,
        audience=(row.tok_audience or "").split(),
        key_resources=(None if row.tok_key_resources is None
                       else frozenset(row.tok_key_resources.split())))


def lookup(session: Session | Engine, token: str, *,
           with_workspace: bool = False) -> TokenInfo | None:
    """The token's row with its key, owner and membership; None for garbage or unknown.

    A value that cannot be a keymint token (is_presented_token: a failed checksum, a JWT
    keymint could not have signed) is rejected here without a database query. One statement,
    outside any transaction unless the session has one (services.reads). with_workspace also
    fills in the workspace's slug and name (the Bearer check).
    """
    if not is_presented_token(token):
        return None
    row = (_BEARER if with_workspace else _LOOKUP).first(
        session, {"digest": credentials.digest(token)})
    if row is None:
        return None
    info = _token_info(row)
    if with_workspace:
        info.workspace_slug = row.tok_workspace_slug
        info.workspace_name = row.tok_workspace_name
    return info


def load_caller_and_token(
    session: Session | Engine, client_id: str, token: str | None, now: datetime
) -> tuple[KeyCredential | None, TokenInfo | None]:
    """The caller's credential (as key_service.load_credential) and the presented token (as
    lookup), read by one statement.

    A token that is not well formed (garbage, a failed checksum) is not looked up: the
    statement is then the credential's alone. The token is None when the caller is unknown or
    may not authenticate: nothing about it is read for a caller that fails. An Engine instead
    of a session reads outside any unit of work (the introspection fast path).
    """
    if not credentials.is_client_id(client_id):
        return None, None
    if token is None or not is_presented_token(token):
        return key_service.load_credential(session, client_id, now), None
    rows = _CALLER_AND_TOKEN.rows(session, {"client_id": client_id,
                                            "digest": credentials.digest(token)})
    cred = key_service.credential_from_rows(rows, now)
    if cred is None or rows[0].tok_id is None:
        return cred, None
    return cred, _token_info(rows[0])


# Built once and run as Core on the session's connection: an ORM-enabled UPDATE would rebuild
# the statement and evaluate it against the identity map on every revocation (no token is ever
# loaded as an ORM object on the way here).
_REVOKE_ONE = (update(AccessToken)
               .where(AccessToken.id == bindparam("token_id"), AccessToken.revoked_at.is_(None))
               .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason")))


def revoke(session: Session, info: TokenInfo, actor: Actor, reason: str = "revoked") -> bool:
    """Revoke one token; True if this call changed it (idempotent otherwise)."""
    return _revoke_one(session, info.id, info.jti, info.workspace_id, actor, reason)


def _revoke_one(session: Session, token_id: int, jti: str, workspace_id: int, actor: Actor,
                reason: str) -> bool:
    result = session.connection().execute(
        _REVOKE_ONE, {"token_id": token_id, "now": utcnow(), "reason": reason})
    if not result.rowcount:
        return False
    token_counts.note(session, token_counts.REVOKED, reason)
    audit.append(session, "token.revoked", actor, workspace_id=workspace_id,
                 target_type="token", target_id=jti, details={"reason": reason})
    return True


def revoke_of_key(session: Session, key: ApiKey, jti: str, actor: Actor) -> bool:
    """Revoke one token of `key` named by its public jti (the console's token list);
    NotFound for a jti of another key. True if this call changed it."""
    row = session.execute(select(AccessToken.id, AccessToken.workspace_id).where(
        AccessToken.jti == jti, AccessToken.key_id == key.id)).first() if len(jti) <= 32 \
        else None
    if row is None:
        raise NotFound(f"no token {jti!r} of this key", field="jti")
    return _revoke_one(session, row.id, jti, row.workspace_id, actor, "revoked")


def _revoke_lineage(session: Session, root_id: int, now: datetime) -> list[int]:
    """Revoke every descendant of a token (following replaced_by); returns their ids."""
    revoked: list[int] = []
    current = session.scalar(select(AccessToken.replaced_by_id).where(AccessToken.id == root_id))
    seen = {root_id}
    while current is not None and current not in seen:
        seen.add(current)
        session.execute(update(AccessToken)
                        .where(AccessToken.id == current, AccessToken.revoked_at.is_(None))
                        .values(revoked_at=now, revoked_reason="reuse_detected"))
        revoked.append(current)
        current = session.scalar(select(AccessToken.replaced_by_id)
                                 .where(AccessToken.id == current))
    return revoked


_CLAIM_FOR_ROTATION = (update(AccessToken)
                       .where(AccessToken.id == bindparam("token_id"),
                              AccessToken.revoked_at.is_(None),
                              AccessToken.replaced_by_id.is_(None))
                       .values(revoked_at=bindparam("now"), revoked_reason="rotated"))
_LINK_REPLACEMENT = (update(AccessToken).where(AccessToken.id == bindparam("token_id"))
                     .values(replaced_by_id=bindparam("replaced_by_id")))


def rotate(
    session: Session,
    info: TokenInfo,
    cred: KeyCredential,
    secret: SecretRow | None,
    scopes: list[str] | None,
    ttl: int,
    actor: Actor,
    jwt: JwtSigning | None = None,
) -> IssuedToken:
    """Atomically retire `info` and issue its replacement (a JWT with `jwt`, whatever the old
    token was: the workspace's format now decides); a second rotation is reuse."""
    now = utcnow()
    if info.replaced_by_id is not None:
        descendants = _revoke_lineage(session, info.id, now)
        token_counts.note(session, token_counts.REVOKED, "reuse_detected", len(descendants))
        audit.record(session, "token.reuse_detected", actor, workspace_id=info.workspace_id,
                     target_type="token", target_id=info.jti,
                     details={"lineage_revoked": len(descendants)})
        webhooks.emit(session, "token.reuse_detected", info.workspace_id, {
            "client_id": info.client_id, "token_id": info.jti, "lineage_revoked": len(descendants)})
        raise ReusedToken("this token was already rotated; its lineage has been revoked")
    if not info.is_active(now):
        raise InvalidInput("the token is not active", field="token")
    new_scopes = info.scopes if scopes is None else scopes
    if not set(new_scopes) <= set(info.scopes):
        raise InvalidInput("a rotated token can only narrow its scopes", field="scope")
    # Conditional update: of two concurrent rotations only one sees revoked_at IS NULL.
    claimed = session.connection().execute(_CLAIM_FOR_ROTATION, {"token_id": info.id,
                                                                 "now": now})
    if not claimed.rowcount:
        raise ReusedToken("this token was already rotated or revoked")
    issued = issue(session, cred, secret, new_scopes, ttl, actor, rotated_from_id=info.id,
                   audit_action="token.rotated", jwt=jwt,
                   audience=info.audience or None)
    session.connection().execute(_LINK_REPLACEMENT, {"token_id": info.id,
                                                     "replaced_by_id": issued.row_id})
    token_counts.note(session, token_counts.ROTATED)
    return issued


def purge_cutoff(retention: timedelta) -> datetime:
    return utcnow() - retention


def _purgeable(cutoff: datetime):
    return or_(AccessToken.expires_at < cutoff, AccessToken.revoked_at < cutoff)


def count_purgeable(session: Session, cutoff: datetime) -> int:
    return session.scalar(select(func.count()).select_from(AccessToken)
                          .where(_purgeable(cutoff))) or 0


@dataclass(frozen=True, slots=True)
class PurgeBatch:
    deleted: int
    last_id: int | None  # resume after this id; None when nothing was left to look at


def purge_batch(session: Session, cutoff: datetime, after_id: int = 0,
                batch_size: int = 5000) -> PurgeBatch:
    """Delete one batch of tokens expired or revoked before `cutoff`, in id order.

    Walking the primary key from `after_id` never rescans rows already deleted, and
    SKIP LOCKED (PostgreSQL) leaves a row some request is revoking right now for the next
    run, so a batch never waits on traffic and traffic only ever waits on one small batch.
    The caller commits after each batch.
    """
    ids = list(session.scalars(
        select(AccessToken.id)
        .where(AccessToken.id > after_id, _purgeable(cutoff))
        .order_by(AccessToken.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)))
    if not ids:
        return PurgeBatch(0, None)
    # Rotation lineage: a surviving token that points at a purged one loses the pointer
    # (the foreign keys say ON DELETE SET NULL too; doing it here keeps it explicit).
    session.execute(update(AccessToken).where(AccessToken.replaced_by_id.in_(ids))
                    .values(replaced_by_id=None))
    session.execute(update(AccessToken).where(AccessToken.rotated_from_id.in_(ids))
                    .values(rotated_from_id=None))
    deleted = session.execute(delete(AccessToken).where(AccessToken.id.in_(ids))).rowcount
    return PurgeBatch(deleted or 0, ids[-1])


def list_active(session: Session, key_id: int) -> list[AccessToken]:
    now = utcnow()
    return list(session.scalars(
        select(AccessToken)
        .where(AccessToken.key_id == key_id, AccessToken.revoked_at.is_(None),
               AccessToken.expires_at > now)
        .order_by(AccessToken.id.desc())))
