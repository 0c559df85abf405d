"""The rate-limit counter: limits' sliding-window strategy over memory or Redis, with fallback.

This is the storage side only (app/web/rate_limits.py decides what is limited and answers the
429). It is the part of Flask-Limiter that keymint used, without Flask-Limiter's per-request
machinery, which cost ~200 µs per OAuth request to resolve four fixed limits:

- counting: limits' sliding-window counter, on the storage named by
  KEYMINT_RATELIMIT_STORAGE_URL (plain memory:// becomes app.runtime.limiter_storage's swept store);
- while Redis is unreachable each process counts in memory instead (limits then hold per
  process, not per cluster) and asks Redis again after 1, 2, 4 ... 60 s;
- a storage error never fails a request: the request is counted in memory, or, should that
  fail too, let through and logged.

State lives per app (app.extensions), so one process can build several apps (tests, CLI).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.runtime import metrics
from app.runtime.limiter_storage import SweptMemoryStorage, storage_uri

log = logging.getLogger("keymint.ratelimit")

_EXTENSION = "keymint_ratelimiter"
# Redis answers in well under a millisecond on a healthy network; a request should not wait
# seconds for a limiter that has gone away.
REDIS_TIMEOUT_S = 0.5
MAX_RECHECK_S = 60.0

T = TypeVar("T")


class Counter:
    """One app's limiter: the configured storage, the fallback, and the parsed limits."""

    def __init__(self, uri: str, limits_by_setting: dict[str, list[RateLimitItem]]) -> None:
        uri = storage_uri(uri)
        options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S
                   } if uri.startswith("redis") else {}
        self.primary: Storage = storage_from_string(uri, **options)
        self._primary = SlidingWindowCounterRateLimiter(self.primary)
        self.limits = limits_by_setting
        self._fallback_storage: SweptMemoryStorage | None = None
        self._fallback: SlidingWindowCounterRateLimiter | None = None
        self._lock = threading.Lock()
        self._dead = False
        self._recheck_at = 0.0
        self._recheck_delay = 1.0
        # A new limiter counts in its configured storage: the gauge says so (one app per
        # process; an earlier app of this process may have left it at 1).
        metrics.set_rate_limit_fallback(False)

    # --- which storage counts right now ----------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The storage counting now: the configured one, or the memory fallback while it is down."""
        return self._fallback_storage if self._dead and self._fallback_storage else self.primary

    def recheck_if_due(self) -> bool:
        """True while the configured storage is unreachable and this process counts alone;
        asks the storage again first if that is due (a readiness probe then sees a recovery
        even when no request came to notice it)."""
        if self._dead and time.monotonic() >= self._recheck_at:
            self._recovered()
        return self._dead

    def _strategy(self) -> SlidingWindowCounterRateLimiter:
        if self._dead and self._fallback is not None and (
                time.monotonic() < self._recheck_at or not self._recovered()):
            return self._fallback
        return self._primary

    def _recovered(self) -> bool:
        with self._lock:
            if not self._dead:
                return True
            try:
                alive = bool(self.primary.check())
            except Exception:
                alive = False
            if alive:
                log.warning("rate-limit storage reachable again; limits are shared again")
                self._dead = False
                metrics.set_rate_limit_fallback(False)
                self._recheck_delay = 1.0
                return True
            self._schedule_recheck()
            return False

    def _schedule_recheck(self) -> None:
        self._recheck_at = time.monotonic() + self._recheck_delay
        self._recheck_delay = min(self._recheck_delay * 2, MAX_RECHECK_S)

    def _mark_dead(self) -> SlidingWindowCounterRateLimiter:
        with self._lock:
            if not self._dead:
                log.warning("rate-limit storage unreachable; counting per process until it is back")
                self._dead = True
                metrics.set_rate_limit_fallback(True)
                self._schedule_recheck()
            if self._fallback is None:
                self._fallback_storage = SweptMemoryStorage()
                self._fallback = SlidingWindowCounterRateLimiter(self._fallback_storage)
            return self._fallback

    def _run(self, operation: Callable[[SlidingWindowCounterRateLimiter], T], default: T) -> T:
        strategy = self._strategy()
        try:
            return operation(strategy)
        except Exception:
            if strategy is not self._primary:
                log.exception("in-memory rate-limit storage failed; request not limited")
                return default
        try:
            return operation(self._mark_dead())
        except Exception:
            log.exception("in-memory rate-limit storage failed; request not limited")
            return default

    # --- counting --------------------------------------------------------------------------

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one request; False if that takes it over the limit (it is then refused)."""
        return self._run(lambda strategy: strategy.hit(item, *identifiers), True)

    def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more request would still be within the limit; counts nothing."""
        return self._run(lambda strategy: strategy.test(item, *identifiers), True)

    def seconds_until_reset(self, item: RateLimitItem, *identifiers: str) -> int:
        """Whole seconds (at least 1) until the limit admits a request again."""
        reset_at = self._run(
            lambda strategy: strategy.get_window_stats(item, *identifiers).reset_time, None)
        if reset_at is None:
            return max(1, int(item.get_expiry()))
        return max(1, int(reset_at - time.time()))

    # --- clearing (the operator's `keymint ratelimit clear`) --------------------------------

    def clear_matching(self, patterns: list[list[str]]) -> int:
        """Delete every counter whose storage key matches one of `patterns`; the number deleted.

        A pattern is a list of literal parts joined by "any characters" (a glob with `*` only),
        so values never need escaping by the caller. Clears the memory fallback too, since a
        lock-out may have been counted there while Redis was away.
        """
        cleared = 0
        for storage in (self.primary, self._fallback_storage):
            if isinstance(storage, RedisStorage):
                globs = ["*".join(_redis_escape(part) for part in parts) for parts in patterns]
                client = storage.storage
                for glob in globs:
                    found = list(client.scan_iter(match=glob, count=1000))
                    if found:
                        cleared += client.delete(*found)
            elif isinstance(storage, MemoryStorage):
                regexes = [re.compile(".*".join(re.escape(part) for part in parts), re.DOTALL)
                           for parts in patterns]
                with self._lock:
                    for name in list(storage.storage) + list(storage.events):
                        if any(rx.fullmatch(name) for rx in regexes):
                            present = name in storage.storage or name in storage.events
                            storage.clear(name)
                            cleared += int(present)
        return cleared


def _redis_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def parse_limits(setting_value: str) -> list[RateLimitItem]:
    return list(parse_many(setting_value))


def init_app(app: Flask, settings: tuple[str, ...]) -> None:
    """Build this app's counter for the limits named by `settings` (config names)."""
    if not app.config.get("KEYMINT_RATELIMIT_ENABLED", True):
        app.extensions[_EXTENSION] = None
        return
    app.extensions[_EXTENSION] = Counter(
        app.config.get("KEYMINT_RATELIMIT_STORAGE_URL") or "memory://",
        {name: parse_limits(app.config[name]) for name in settings})


def storage_state() -> str:
    """The current app's rate-limit storage for /readyz: "ok" (the configured storage counts),
    "fallback" (per-process memory while it is unreachable) or "disabled"."""
    found = counter()
    if found is None:
        return "disabled"
    return "fallback" if found.recheck_if_due() else "ok"


def counter() -> Counter | None:
    """The current app's counter; None when rate limiting is switched off."""
    return current_app.extensions.get(_EXTENSION)


def counter_of(app: Flask) -> Counter | None:
    """counter() of `app`, outside its app context."""
    return app.extensions.get(_EXTENSION)
