"""JWKSCache: keymint's published signing keys, fetched lazily, refreshed on an unknown kid at
most once per interval, and kept (when keymint cannot be reached) until they expire."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import requests
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger("keymint_resource")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class JWKSUnavailable(Exception):
    """No usable key set: keymint's JWKS could not be fetched and none is cached."""


class JWKSCache:
    """The key set at `uri`.

    - fresh for `Cache-Control: max-age` (clamped to [min_ttl, max_ttl]), `default_ttl` without;
    - after that refreshed on the next use; if the refresh fails, the old keys keep serving
      until `stale_ttl` seconds after they were fetched (then: fail closed);
    - a `kid` not in the set triggers a refresh, at most once per `refresh_interval` seconds,
      so a flood of tokens with made-up kids cannot turn into a flood of JWKS requests.
    """

    def __init__(self, uri: str, session: requests.Session, clock: Callable[[], float], *,
                 timeout: float = 5.0, default_ttl: float = 300.0, min_ttl: float = 30.0,
                 max_ttl: float = 86_400.0, stale_ttl: float = 3_600.0,
                 refresh_interval: float = 30.0) -> None:
        self.uri = uri
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._default_ttl = default_ttl
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._stale_ttl = stale_ttl
        self.refresh_interval = refresh_interval
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._fresh_until = 0.0
        self._last_attempt: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0  # requests made to the JWKS endpoint (for operators and tests)

    def key_for(self, kid: str) -> Any | None:
        """The key `kid`, refreshing when the set is stale or lacks it (rate-limited); None if
        keymint does not publish it. Raises JWKSUnavailable when no usable set exists."""
        now = self._clock()
        with self._lock:
            if self._keys is None or now >= self._fresh_until:
                self._refresh(now, reason="expired" if self._keys else "first use")
            keys = self._usable(now)
            key = _find(keys, kid)
            if key is None and self._may_refresh(now):
                self._refresh(now, reason=f"unknown kid {kid[:64]!r}")
                key = _find(self._usable(now), kid)
            return key

    def _may_refresh(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.refresh_interval

    def _usable(self, now: float) -> KeySet:
        if self._keys is None or now >= self._fetched_at + self._stale_ttl:
            raise JWKSUnavailable("no signing keys: keymint's JWKS could not be fetched")
        return self._keys

    def _refresh(self, now: float, reason: str) -> None:
        if not self._may_refresh(now):
            return
        self._last_attempt = now
        self.fetches += 1
        try:
            response = self._session.get(self.uri, timeout=self._timeout,
                                         headers={"Accept": "application/json"})
            response.raise_for_status()
            published = _public_keys(response.json())
            # An empty set is a valid answer (a keymint that has not made a key yet).
            keys = KeySet.import_key_set(published) if published["keys"] else KeySet([])
        except (requests.RequestException, ValueError, JoseError, TypeError) as exc:
            # Fail closed on new kids; cached keys keep serving until stale_ttl (see class doc).
            log.error("keymint JWKS refresh failed (%s) from %s: %s; cached keys: %s",
                      reason, self.uri, type(exc).__name__,
                      "none" if self._keys is None else "kept")
            return
        self._keys = keys
        self._fetched_at = now
        self._fresh_until = now + self._ttl(response.headers.get("Cache-Control", ""))
        log.info("keymint JWKS fetched (%s): %d key(s)", reason, len(keys.keys))

    def _ttl(self, cache_control: str) -> float:
        match = _MAX_AGE.search(cache_control)
        if match is None:
            return self._default_ttl
        return min(max(float(match.group(1)), self._min_ttl), self._max_ttl)


def _public_keys(document: Any) -> dict[str, Any]:
    """The JWKS document with only public, signing-capable keys (a published private part or a
    symmetric key is never trusted: an "oct" key would let anyone who reads it sign)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys = [key for key in document["keys"]
            if isinstance(key, dict) and key.get("kty") in ("EC", "OKP") and "d" not in key
            and key.get("use", "sig") == "sig" and isinstance(key.get("kid"), str)]
    return {"keys": keys}


def _find(keys: KeySet, kid: str) -> Any | None:
    for key in keys.keys:
        if key.kid == kid:
            return key
    return None
