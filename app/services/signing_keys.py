"""JWT signing keys: generation, encryption at rest, the publish-before-sign timeline, signing."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwe, jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OctKey, OKPKey
from joserfc.util import to_bytes
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.models import SigningKey
from app.services import audit, reads
from app.services.audit import Actor
from app.services.errors import Conflict, DomainError, InvalidInput, NotFound

# How long resource servers may cache GET /.well-known/jwks.json (its Cache-Control max-age),
# and so how long a new key is published before it signs: every cached copy of the JWKS that
# a resource server may still hold when the key starts signing already lists it.
JWKS_MAX_AGE = 300
PUBLISH_LEAD = timedelta(seconds=JWKS_MAX_AGE)

ES256 = "ES256"
EDDSA = "EdDSA"
ALGORITHMS = (ES256, EDDSA)
DEFAULT_ALG = ES256
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (RFC 9068 §2.1, a media type)

# RFC 9864 deprecates the polymorphic "EdDSA" name in favour of "Ed25519", which resource
# servers' JOSE libraries do not widely accept yet; keymint signs Ed25519 under "EdDSA".
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")

PENDING, ACTIVE, RETIRED = "pending", "active", "retired"

_NOW = bindparam("now")


class SigningUnavailable(DomainError):
    """No key can sign right now, or its private part cannot be decrypted."""

    code = "signing_unavailable"


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """The key that signs now, its private part decrypted (kept in memory only)."""

    kid: str
    alg: str
    private: Any
    # A token it signs must expire by then: the key is unpublished at that instant.
    published_until: datetime | None


def _generate(alg: str) -> Any:
    if alg == ES256:
        return ECKey.generate_key("P-256", private=True, auto_kid=True)
    if alg == EDDSA:
        return OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
    raise InvalidInput(f"alg must be one of {', '.join(ALGORITHMS)}", field="alg")


def _kek(kek: bytes) -> OctKey:
    return OctKey.import_key(kek)


def _encrypt(kek: bytes, kid: str, private: dict[str, Any]) -> str:
    # The kid in the protected header is authenticated by A256GCM: a private part copied
    # onto another row does not decrypt as that row's key.
    header = {"alg": "dir", "enc": "A256GCM", "kid": kid}
    return jwe.encrypt_compact(header, json.dumps(private), _kek(kek))


def _decrypt(kek: bytes, kid: str, alg: str, private_jwe: str) -> Any:
    try:
        message = jwe.decrypt_compact(private_jwe, _kek(kek))
    except (JoseError, ValueError):
        raise SigningUnavailable(
            f"signing key {kid} cannot be decrypted with the configured "
            "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY") from None
    if message.protected.get("kid") != kid or message.plaintext is None:
        raise SigningUnavailable(f"signing key {kid} holds another key's private part")
    data = json.loads(message.plaintext)
    return (ECKey if alg == ES256 else OKPKey).import_key(data)


# Decrypted private keys by (kid, KEK): a key's private part never changes, and decrypting
# it on every issuance would cost more than signing.
_decrypted: dict[tuple[str, bytes], Any] = {}
_DECRYPTED_MAX = 16


def _private_key(kek: bytes, kid: str, alg: str, private_jwe: str) -> Any:
    found = _decrypted.get((kid, kek))
    if found is None:
        found = _decrypt(kek, kid, alg, private_jwe)
        if len(_decrypted) >= _DECRYPTED_MAX:
            _decrypted.clear()
        _decrypted[(kid, kek)] = found
    return found


def state(key: SigningKey, now: datetime) -> str:
    """pending (published, not signing yet), active (signing) or retired (signing no more)."""
    if now < key.activates_at:
        return PENDING
    if key.retires_at is not None and now >= key.retires_at:
        return RETIRED
    return ACTIVE


def is_published(key: SigningKey, now: datetime) -> bool:
    return key.published_until is None or now < key.published_until


def _published_until(key: SigningKey, max_token_ttl: int) -> datetime:
    """A retiring key stays published until the last token it may have signed expires."""
    assert key.retires_at is not None
    if key.retires_at <= key.activates_at:
        return key.retires_at  # it never signed
    return key.retires_at + timedelta(seconds=max_token_ttl)


def _schedule_retirement(session: Session, key: SigningKey, at: datetime, max_token_ttl: int,
                         actor: Actor, reason: str) -> None:
    key.retires_at = at
    key.published_until = _published_until(key, max_token_ttl)
    audit.record(session, "signing_key.retired", actor, workspace_id=None,
                 target_type="signing_key", target_id=key.kid,
                 details={"reason": reason, "retires_at": at.isoformat(),
                          "published_until": key.published_until.isoformat()})


def list_keys(session: Session) -> list[SigningKey]:
    """Every signing key, oldest first."""
    return list(session.scalars(select(SigningKey).order_by(SigningKey.activates_at,
                                                            SigningKey.id)))


def get(session: Session, kid: str) -> SigningKey:
    key = session.scalar(select(SigningKey).where(SigningKey.kid == kid))
    if key is None:
        raise NotFound(f"no signing key {kid!r}")
    return key


def rotate(session: Session, kek: bytes | None, actor: Actor, *, max_token_ttl: int,
           alg: str = DEFAULT_ALG, at_once: bool = False) -> SigningKey:
    """Add a key that signs from PUBLISH_LEAD from now (at once with at_once), and schedule
    every key that would still sign then to stop at that instant.

    `max_token_ttl` is the longest a JWT may live (KEYMINT_JWT_ACCESS_TOKEN_TTL): a retiring
    key stays published that much longer.
    """
    if not kek:
        raise SigningUnavailable("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY is not set: signing keys "
                                 "cannot be stored")
    private = _generate(alg)
    now = utcnow()
    activates_at = now if at_once else now + PUBLISH_LEAD
    public = {**private.as_dict(private=False), "alg": alg, "use": "sig"}
    key = SigningKey(kid=private.kid, alg=alg, public_jwk=json.dumps(public),
                     private_jwe=_encrypt(kek, private.kid,
                                          dict(private.as_dict(private=True))),
                     created_at=now, activates_at=activates_at)
    for old in session.scalars(select(SigningKey).where(
            or_(SigningKey.retires_at.is_(None), SigningKey.retires_at > activates_at))):
        _schedule_retirement(session, old, activates_at, max_token_ttl, actor,
                             "rotated_now" if at_once else "rotated")
    session.add(key)
    audit.record(session, "signing_key.created", actor, workspace_id=None,
                 target_type="signing_key", target_id=key.kid,
                 details={"alg": alg, "activates_at": activates_at.isoformat(),
                          "at_once": at_once})
    session.flush()
    return key


def retire(session: Session, kid: str, actor: Actor, *, max_token_ttl: int) -> SigningKey:
    """Stop a key signing now; it stays published while tokens it signed may be live.

    The key that signs now can only be retired once another one signs (rotate first):
    retiring it would leave JWT workspaces with no way to get a token.
    """
    key = get(session, kid)
    now = utcnow()
    current = state(key, now)
    if current == RETIRED:
        raise Conflict(f"signing key {kid} is already retired")
    if current == ACTIVE and _signing_key_row(session, now) is key:
        if key.retires_at is not None:
            raise Conflict(f"signing key {kid} already stops signing at "
                           f"{key.retires_at.isoformat()}, when the key rotated in starts; "
                           "it cannot stop earlier without `rotate --now`")
        raise Conflict(f"signing key {kid} is the one signing now; rotate to a new key first "
                       "(`keymint signing-keys rotate`, or `--now` in an emergency)")
    _schedule_retirement(session, key, now, max_token_ttl, actor, "retired")
    session.flush()
    return key


def _signing_key_row(session: Session, now: datetime) -> SigningKey | None:
    return session.scalar(_signer_query(SigningKey), {"now": now})


def _signer_query(*columns: Any):
    return (select(*columns)
            .where(SigningKey.activates_at <= _NOW,
                   or_(SigningKey.retires_at.is_(None), SigningKey.retires_at > _NOW))
            .order_by(SigningKey.activates_at.desc(), SigningKey.id.desc())
            .limit(1))


def signer(session: Session, kek: bytes | None, now: datetime) -> LoadedKey:
    """The key that signs at `now`, decrypted; SigningUnavailable if there is none."""
    if not kek:
        raise SigningUnavailable("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY is not set")
    row = reads.first_row(session, _SIGNER_QUERY, {"now": now})
    if row is None:
        raise SigningUnavailable("no signing key is active (run `keymint signing-keys rotate "
                                 "--now` to create the first one)")
    return LoadedKey(kid=row.kid, alg=row.alg,
                     private=_private_key(kek, row.kid, row.alg, row.private_jwe),
                     published_until=row.published_until)


def published(session: Session, now: datetime) -> list[dict[str, Any]]:
    """The public JWKs a resource server may meet now: pending, active and retired keys
    whose tokens may still be live."""
    rows = reads.all_rows(session, _PUBLISHED_QUERY, {"now": now})
    return [json.loads(row.public_jwk) for row in rows]


def sign(key: LoadedKey, claims: dict[str, Any]) -> str:
    """A compact JWS of `claims` with the RFC 9068 header."""
    header = {"alg": key.alg, "typ": ACCESS_TOKEN_TYP, "kid": key.kid}
    return jwt.encode(header, claims, key.private, algorithms=[key.alg])


def is_access_jwt(value: str | None) -> bool:
    """Shaped like a keymint JWT access token (three segments; an at+jwt header keymint could
    have signed). Nothing is verified: the token is then looked up by its digest, and garbage
    costs no query."""
    if not credentials.looks_like_jwt(value):
        return False
    try:
        header = jws.extract_compact(to_bytes(value)).headers()
    except (JoseError, ValueError, TypeError):
        return False
    return (header.get("typ") == ACCESS_TOKEN_TYP and header.get("alg") in ALGORITHMS
            and isinstance(header.get("kid"), str))


_SIGNER_QUERY = _signer_query(SigningKey.kid, SigningKey.alg, SigningKey.private_jwe,
                              SigningKey.published_until)
_PUBLISHED_QUERY = (select(SigningKey.public_jwk)
                    .where(or_(SigningKey.published_until.is_(None),
                               SigningKey.published_until > _NOW))
                    .order_by(SigningKey.activates_at, SigningKey.id))
