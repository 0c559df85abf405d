"""IntrospectionCache: a bounded, thread-safe LRU of verification results (introspection answers,
verified JWTs) with per-entry expiry."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

Entry = tuple[float, Any]  # (expires at, epoch seconds; the answer)


class IntrospectionCache:
    """At most `max_entries` answers; an entry is served only strictly before its expiry."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, now: float) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry[0]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Any, answer: Any, expires_at: float, now: float) -> None:
        if expires_at <= now:
            return
        with self._lock:
            self._entries[key] = (expires_at, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
