"""TokenVerifier: keymint access tokens checked by a resource server, JWTs locally against the
JWKS, opaque tokens by introspection behind a short, bounded cache."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwt import JWTClaimsRegistry

from keymint_resource.cache import IntrospectionCache
from keymint_resource.errors import InsufficientScope, InvalidToken, VerifierUnavailable
from keymint_resource.jwks import JWKSCache, JWKSUnavailable
from keymint_resource.token import AccessToken

log = logging.getLogger("keymint_resource")

METADATA_PATH = "/.well-known/oauth-authorization-server"
DEFAULT_ALGORITHMS = ("ES256", "EdDSA", "Ed25519")
# RFC 9068 §4: "at+jwt", possibly with the "application/" prefix, compared case-insensitively.
_JWT_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_JWT_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
# Cap on what is sent to keymint or parsed: keymint's own tokens are far shorter.
MAX_TOKEN_LENGTH = 4096


class TokenVerifier:
    """Verifies keymint access tokens for one resource server.

    `client_id`/`client_secret` are a keymint key with the `introspect` scope, in the workspace
    whose tokens this server accepts. `audience` is this resource's identifier (its URI as
    registered with `keymint resources create`); a token whose audience is known (every JWT,
    introspection answers that carry `aud`) must then include it, so a token minted for
    another API is refused here. Without it the audience is not checked: set it.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | None = None,
        max_stale: float = 5.0,
        inactive_ttl: float = 2.0,
        cache: bool = True,
        cache_size: int = 10_000,
        jwt_cache: bool = True,
        leeway: int = 5,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        verify_jwt_locally: bool = True,
        route_policy: bool = True,
        jwks_refresh_interval: float = 30.0,
        jwks_stale_ttl: float = 3_600.0,
        discovery_retry_interval: float = 10.0,
        timeout: float = 5.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_stale < 0 or inactive_ttl < 0:
            raise ValueError("max_stale and inactive_ttl must not be negative")
        if "none" in {alg.lower() for alg in algorithms}:
            raise ValueError("'none' is not a signing algorithm")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._auth = (client_id, client_secret)
        self.max_stale = max_stale
        # An inactive answer is cached briefly, and never longer than an active one would be.
        self.inactive_ttl = min(inactive_ttl, max_stale)
        self.cache: IntrospectionCache | None = (
            IntrospectionCache(cache_size) if cache and max_stale > 0 else None)
        # Verified JWTs, by digest: a token is presented on every request of its client, and
        # checking its signature again each time costs more than the rest of the request.
        self.jwt_cache: IntrospectionCache | None = (
            IntrospectionCache(cache_size) if jwt_cache else None)
        self.leeway = leeway
        self.algorithms = tuple(algorithms)
        self.verify_jwt_locally = verify_jwt_locally
        self.route_policy = route_policy
        self._jwks_options = {"refresh_interval": jwks_refresh_interval,
                              "stale_ttl": jwks_stale_ttl}
        self.timeout = timeout
        self.session = session or requests.Session()
        self.clock = clock
        self._metadata: dict[str, Any] | None = None
        self.discovery_retry_interval = discovery_retry_interval
        self._discovery_failed_at: float | None = None
        self._jwks: JWKSCache | None = None
        self._lock = threading.Lock()
        self.introspections = 0  # requests made to keymint's introspection endpoint
        self.signature_checks = 0  # JWT signatures verified (not answered from jwt_cache)
        # Built once: it holds only options, and `now` is read through the clock on each use.
        self._claims = JWTClaimsRegistry(
            now=lambda: int(self.clock()), leeway=leeway,
            iss={"essential": True, "value": self.issuer},
            **({"aud": {"essential": True, "value": audience}} if audience else {}),
            **{name: {"essential": True} for name in _JWT_CLAIMS if name not in ("iss", "aud")})

    # --- public API ---------------------------------------------------------------------------

    def verify(self, token: str) -> AccessToken:
        """The active token `token`, or InvalidToken / VerifierUnavailable."""
        return self._verify(token, None, None)

    def check(self, token: str, method: str | None = None, path: str | None = None,
              scopes: Iterable[str] = ()) -> AccessToken:
        """verify(), then the request's permission: every scope of `scopes`, and (for tokens
        keymint introspects) the resource's route policy for `method path` when keymint
        answers with `allowed`. Raises InsufficientScope naming the missing scope(s)."""
        route = (method.upper(), path) if method and path and self.route_policy else None
        access = self._verify(token, *(route or (None, None)))
        if route is not None and access.claims.get("allowed") is False:
            missing = _scope_list(access.claims.get("missing_scope"))
            raise InsufficientScope(
                f"The token may not call {route[0]} {route[1]}.", missing)
        missing = access.missing_scopes(scopes)
        if missing:
            raise InsufficientScope("The token lacks a required scope.", missing)
        return access

    @property
    def metadata(self) -> dict[str, Any]:
        """keymint's RFC 8414 metadata, fetched on first use."""
        with self._lock:
            if self._metadata is None:
                now = self.clock()
                failed = self._discovery_failed_at
                # While keymint is unreachable, requests fail at once instead of each waiting
                # for its own timeout: one attempt per interval.
                if failed is not None and now - failed < self.discovery_retry_interval:
                    raise VerifierUnavailable("The authorization server cannot be reached.")
                try:
                    self._metadata = self._discover()
                except VerifierUnavailable:
                    self._discovery_failed_at = now
                    raise
            return self._metadata

    # --- dispatch -----------------------------------------------------------------------------

    def _verify(self, token: str, method: str | None, path: str | None) -> AccessToken:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The access token is malformed.")
        if token.count(".") == 2 and self.verify_jwt_locally and self._jwks_cache() is not None:
            return self._verify_jwt(token)
        return self._introspect(token, method, path)

    def _jwks_cache(self) -> JWKSCache | None:
        if self._jwks is not None:  # set once, after discovery: no lock on the hot path
            return self._jwks
        uri = self.metadata.get("jwks_uri")
        if not isinstance(uri, str):
            return None  # a keymint without JWT tokens: JWTs, if any, are introspected
        with self._lock:
            if self._jwks is None:
                self._jwks = JWKSCache(uri, self.session, self.clock, timeout=self.timeout,
                                       **self._jwks_options)
            return self._jwks

    # --- discovery ----------------------------------------------------------------------------

    def _discover(self) -> dict[str, Any]:
        url = self.issuer + METADATA_PATH
        try:
            response = self.session.get(url, timeout=self.timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.error("keymint metadata unavailable at %s: %s", url, type(exc).__name__)
            raise VerifierUnavailable("The authorization server cannot be reached.") from None
        # RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            log.error("keymint metadata at %s names another issuer: refusing it", url)
            raise VerifierUnavailable("The authorization server's metadata does not match.")
        if not isinstance(document.get("introspection_endpoint"), str):
            raise VerifierUnavailable("The authorization server offers no introspection.")
        return document

    # --- JWT (RFC 9068), validated locally ----------------------------------------------------

    def _verify_jwt(self, token: str) -> AccessToken:
        jwks = self._jwks
        assert jwks is not None
        try:
            raw = token.encode("ascii")
        except UnicodeError:
            raise InvalidToken("The access token is malformed.") from None
        digest = hashlib.sha256(raw).digest() if self.jwt_cache is not None else None
        if digest is not None:
            access = self._cached_jwt(digest, jwks)
            if access is not None:
                return access
        try:
            header = jws.extract_compact(raw).protected
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("The access token is malformed.") from None
        if str(header.get("typ", "")).lower() not in _JWT_TYPES:
            raise InvalidToken("The token is not an access token (typ must be at+jwt).")
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token names no signing key.")
        key = self._key(jwks, kid)
        if key is None:
            raise InvalidToken("The token is signed by an unknown key.")
        self.signature_checks += 1
        try:
            claims = jwt.decode(raw, key, algorithms=[alg]).claims
        except JoseError:
            raise InvalidToken("The token's signature is invalid.") from None
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from None
        access = AccessToken.from_claims("jwt", claims)
        if digest is not None and self.jwt_cache is not None:
            # Until the instant the claims check would call it expired (joserfc: exp must be
            # greater than now - leeway), and only from when nbf/iat allowed it.
            starts = [float(claims[name]) - self.leeway for name in ("nbf", "iat")
                      if isinstance(claims.get(name), int | float)]
            now = self.clock()
            # The claims, not the AccessToken: each request gets its own copy to keep.
            self.jwt_cache.put(digest, (kid, key, max(starts, default=now), claims),
                               float(claims["exp"]) + self.leeway, now)
        return access

    def _cached_jwt(self, digest: bytes, jwks: JWKSCache) -> AccessToken | None:
        """The decision for a JWT verified before (the same bytes), if it still holds: not
        expired, past nbf/iat, and its signing key still the one published (a key withdrawn
        from the JWKS stops its tokens at the next refresh, as it does without this cache)."""
        assert self.jwt_cache is not None
        now = self.clock()
        entry = self.jwt_cache.get(digest, now)
        if entry is None:
            return None
        kid, key, valid_from, claims = entry
        if now < valid_from or self._key(jwks, kid) is not key:
            return None
        return AccessToken.from_claims("jwt", claims)

    @staticmethod
    def _key(jwks: JWKSCache, kid: str) -> Any | None:
        try:
            return jwks.key_for(kid)
        except JWKSUnavailable:
            raise VerifierUnavailable("The authorization server's keys are unavailable.") from None

    # --- opaque tokens: introspection (RFC 7662) behind the cache ----------------------------

    def _introspect(self, token: str, method: str | None, path: str | None) -> AccessToken:
        key = (hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest(), method, path)
        now = self.clock()
        answer = self.cache.get(key, now) if self.cache is not None else None
        if answer is None:
            answer = self._ask(token, method, path)
            if self.cache is not None:
                self.cache.put(key, answer, self._expiry(answer, now), now)
        if answer.get("active") is not True:
            raise InvalidToken("The access token is not active.")
        exp = answer.get("exp")
        if isinstance(exp, int | float) and self.clock() >= exp:
            raise InvalidToken("The access token is not active.")
        if answer.get("iss") not in (None, self.issuer):
            raise InvalidToken("The token was issued by another server.")
        access = AccessToken.from_claims("opaque", answer)
        if self.audience and "aud" in answer and self.audience not in access.audience:
            raise InvalidToken("The token is not meant for this resource.")
        return access

    def _expiry(self, answer: Mapping[str, Any], now: float) -> float:
        if answer.get("active") is not True:
            return now + self.inactive_ttl
        until = now + self.max_stale
        exp = answer.get("exp")
        return min(until, float(exp)) if isinstance(exp, int | float) else until

    def _ask(self, token: str, method: str | None, path: str | None) -> dict[str, Any]:
        url = self.metadata["introspection_endpoint"]
        form = {"token": token, "token_type_hint": "access_token"}
        if method and path:
            form.update(method=method, path=path)
        self.introspections += 1
        try:
            # One attempt, bounded by the timeout: a slow keymint must not pile up retries.
            response = self.session.post(url, data=form, auth=self._auth, timeout=self.timeout)
        except requests.RequestException as exc:
            log.error("keymint introspection failed: %s", type(exc).__name__)
            raise VerifierUnavailable("The authorization server cannot be reached.") from None
        if response.status_code != 200:
            # 401/403 here mean this server's own key is wrong: an operator must act.
            log.error("keymint introspection answered HTTP %d%s", response.status_code,
                      " (check the resource server's key and its 'introspect' scope)"
                      if response.status_code in (400, 401, 403) else "")
            raise VerifierUnavailable("The authorization server refused to answer.")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            log.error("keymint introspection answered something that is not RFC 7662 JSON")
            raise VerifierUnavailable("The authorization server's answer is unreadable.")
        return answer


def _scope_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return ()


def _claim_problem(exc: JoseError) -> str:
    if isinstance(exc, ExpiredTokenError):
        return "The access token has expired."
    claim = getattr(exc, "claim", None)
    if claim == "nbf":
        return "The access token is not valid yet."
    if claim == "iat":
        return "The access token was issued in the future."
    if claim == "aud":
        return "The token is not meant for this resource."
    if claim == "iss":
        return "The token was issued by another server."
    if isinstance(exc, MissingClaimError):
        return f"The access token lacks the '{claim}' claim."
    return "The access token's claims are invalid."
