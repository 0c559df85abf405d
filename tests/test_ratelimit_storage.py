"""The rate-limit counter: swept memory storage (no thread per hit) and the storage fallback."""

from __future__ import annotations

import threading

from freezegun import freeze_time
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.runtime.limiter import Counter
from app.runtime.limiter_storage import SweptMemoryStorage, storage_uri


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


class FlakyStorage(SweptMemoryStorage):
    """A shared storage (think Redis) that can go away and come back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _maybe_fail(self) -> None:
        if self.down:
            raise ConnectionError("storage unreachable")

    def incr(self, *args, **kwargs):
        self._maybe_fail()
        return super().incr(*args, **kwargs)

    def get(self, *args, **kwargs):
        self._maybe_fail()
        return super().get(*args, **kwargs)

    def get_sliding_window(self, *args, **kwargs):
        self._maybe_fail()
        return super().get_sliding_window(*args, **kwargs)

    def acquire_sliding_window_entry(self, *args, **kwargs):
        self._maybe_fail()
        return super().acquire_sliding_window_entry(*args, **kwargs)

    def check(self) -> bool:
        return not self.down


def _counter_on(storage: SweptMemoryStorage) -> Counter:
    counter = Counter("memory://", {})
    counter.primary = storage
    counter._primary = SlidingWindowCounterRateLimiter(storage)
    return counter


def test_storage_outage_counts_per_process_then_returns_to_the_shared_storage(caplog):
    item = parse("2 per hour")
    with freeze_time("2030-01-01T00:00:00Z") as clock:
        shared = FlakyStorage()
        counter = _counter_on(shared)
        assert counter.hit(item, "client", "a")
        shared.down = True
        # Limits still hold while the storage is away, counted in this process from zero.
        assert [counter.hit(item, "client", "a") for _ in range(3)] == [True, True, False]
        assert counter.storage is not shared
        assert "unreachable" in caplog.text
        shared.down = False
        clock.tick(0.5)  # not yet time to ask again
        assert not counter.hit(item, "client", "a")
        clock.tick(1)
        # Back on the shared storage, which still holds the one hit from before the outage.
        assert [counter.hit(item, "client", "a") for _ in range(2)] == [True, False]
        assert counter.storage is shared


def test_a_storage_that_stays_down_is_asked_again_less_and_less_often():
    item = parse("100 per hour")
    with freeze_time("2030-01-01T00:00:00Z") as clock:
        shared = FlakyStorage()
        shared.down = True
        checks = []
        shared.check = lambda: checks.append(1) or False
        counter = _counter_on(shared)
        for _ in range(40):  # 40 s, a request every second
            assert counter.hit(item, "ip", "x")
            clock.tick(1)
        # asked 1, 2, 4, 8 and 16 s after the previous try: never once per request
        assert len(checks) == 5


def test_when_even_the_fallback_fails_requests_pass(monkeypatch, caplog):
    item = parse("1 per hour")
    shared = FlakyStorage()
    shared.down = True
    counter = _counter_on(shared)
    counter._mark_dead()
    monkeypatch.setattr(counter._fallback_storage, "incr",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("broken")))
    monkeypatch.setattr(counter._fallback_storage, "acquire_sliding_window_entry",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("broken")))
    assert counter.hit(item, "client", "a") and counter.hit(item, "client", "a")
    assert "request not limited" in caplog.text


def test_disabled_rate_limiting_builds_no_counter():
    from app import create_app
    from app.runtime import limiter

    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "KEYMINT_RATELIMIT_ENABLED": False})
    with app.app_context():
        assert limiter.counter() is None
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "KEYMINT_RATELIMIT_ENABLED": True})
    with app.app_context():
        assert isinstance(limiter.counter().storage, SweptMemoryStorage)
