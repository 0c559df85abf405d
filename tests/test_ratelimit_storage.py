"""The in-memory rate-limit storage: same counting as limits' MemoryStorage, no thread per hit."""

from __future__ import annotations

import threading

from freezegun import freeze_time
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.ratelimit_storage import SweptMemoryStorage, storage_uri


def test_plain_memory_uri_selects_the_swept_storage():
    assert storage_uri("memory://") == "keymint+memory://"
    assert storage_uri("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert isinstance(storage_from_string(storage_uri("memory://")), SweptMemoryStorage)


def test_hits_start_no_threads(monkeypatch):
    storage = SweptMemoryStorage()
    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("1000 per minute")
    for n in range(200):
        assert limiter.hit(item, "client", str(n % 7))
    assert started == []


def test_limit_is_enforced_and_expired_counters_are_swept():
    with freeze_time("2030-01-01T00:00:00Z") as clock:
        storage = SweptMemoryStorage()
        limiter = SlidingWindowCounterRateLimiter(storage)
        item = parse("2 per second")
        assert [limiter.hit(item, "a") for _ in range(3)] == [True, True, False]
        assert any("/a/" in key for key in storage.storage)
        clock.tick(5)
        assert limiter.hit(item, "b")  # the first write after the interval sweeps
        assert not any("/a/" in key for key in storage.storage)
        assert limiter.hit(item, "a")


def test_flask_limiter_middleware_check_is_dropped_only_without_app_wide_limits(monkeypatch):
    """keymint's limits all sit on views; the per-request middleware check would find none."""
    from types import SimpleNamespace

    from app import create_app
    from app.extensions import limiter

    config = {"SQLALCHEMY_DATABASE_URI": "sqlite://", "KEYMINT_RATELIMIT_ENABLED": True}
    app = create_app(config)
    assert limiter._check_request_limit not in app.before_request_funcs.get(None, [])
    # Should someone add a default limit, the middleware check stays.
    monkeypatch.setattr(limiter.limit_manager, "_default_limits",
                        [SimpleNamespace(finalized=True)])
    app = create_app(config)
    assert limiter._check_request_limit in app.before_request_funcs.get(None, [])
