"""In-memory rate-limit storage that expires counters without a thread per request.

limits' MemoryStorage removes expired counters in a threading.Timer that fires 10 ms after
it is started and is restarted by the next hit once it has run: under steady traffic that is
a new OS thread for about every other request (measured: ~1 ms of CPU per OAuth request,
more than the endpoint's own work). Counting is unaffected by when the sweep runs, because a
read drops an expired counter itself; the sweep only frees memory. Here it runs inline, in
whichever request thread comes along first after SWEEP_INTERVAL seconds, doing the same work
the timer thread did.
"""

from __future__ import annotations

import threading
import time

from limits.storage import MemoryStorage

SCHEME = "keymint+memory"


class SweptMemoryStorage(MemoryStorage):
    """MemoryStorage with the timer thread replaced by an inline sweep at most once a second."""

    STORAGE_SCHEME = [SCHEME]
    SWEEP_INTERVAL = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    # limits calls this (name-mangled) before every write; the parent starts a Timer here.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + self.SWEEP_INTERVAL
            self._MemoryStorage__expire_events()
        finally:
            self._sweep_lock.release()


def storage_uri(configured: str) -> str:
    """The storage URI to hand to Flask-Limiter: plain memory:// becomes the swept storage."""
    if configured.rstrip("/") in ("memory:", "memory://"):
        return f"{SCHEME}://"
    return configured


def _unwrap_error_wrappers(cls: type) -> None:
    """Drop limits' exception-wrapping layers from `cls`'s storage methods.

    limits wraps a storage's methods in a try/except that turns driver errors into its
    StorageError when wrap_exceptions=True, and re-wraps the inherited, already wrapped
    methods again for every subclass: a counter test here went through ~7 nested wrappers,
    about a sixth of the rate-limit check's CPU. These memory storages never set
    wrap_exceptions and raise no driver errors, so the wrappers only re-raise.
    """
    for name in ("incr", "get", "get_expiry", "check", "reset", "clear",
                 "acquire_entry", "get_moving_window", "acquire_sliding_window_entry",
                 "get_sliding_window", "clear_sliding_window"):
        method = getattr(cls, name, None)
        if method is None:
            continue
        while hasattr(method, "__wrapped__"):
            method = method.__wrapped__
        setattr(cls, name, method)


_unwrap_error_wrappers(SweptMemoryStorage)

