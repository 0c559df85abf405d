"""Shutdown hooks: flush buffered state (usage counters, last-used) before a process exits.

Anything that buffers writes in memory registers a flush here, in its init_app():

    from app.runtime import lifecycle
    lifecycle.register_flush(app, flush_usage_counters)

`flush_usage_counters()` takes no arguments and runs inside an app context with a fresh
session; it should write and commit its buffer in short transactions. `keymint serve`
calls every registered flush through worker_exit() in each worker process, once the worker
has stopped accepting and finished its in-flight requests (SIGTERM/SIGINT, up to 30 s; see
app/runtime/server.py). A failing flush is logged and does not stop the others; each flush runs at
most once per process exit. (Granian's forked workers end with os._exit, so atexit hooks
never run there; buffers that must also survive other processes' exits register an atexit
hook themselves, as the legacy usage counters do.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask

log = logging.getLogger("keymint.lifecycle")

_EXTENSION = "keymint_flush_hooks"


def register_flush(app: Flask, flush: Callable[[], None]) -> None:
    """Run `flush` (inside an app context) when this process shuts down."""
    hooks: list[Callable[[], None]] = app.extensions.setdefault(_EXTENSION, [])
    if flush not in hooks:
        hooks.append(flush)


def flush_all(app: Flask) -> int:
    """Run every registered flush once; returns how many succeeded. Never raises."""
    from app.extensions import db

    hooks: list[Callable[[], None]] = app.extensions.get(_EXTENSION, [])
    done = 0
    while hooks:
        flush = hooks.pop(0)  # popped first: a second shutdown signal cannot run it twice
        with app.app_context():
            try:
                flush()
                done += 1
            except Exception:
                log.exception("shutdown flush %s failed",
                              getattr(flush, "__qualname__", repr(flush)))
                db.session.rollback()
            finally:
                db.session.remove()
    return done


def worker_exit(app: object) -> None:
    """A server worker is leaving, after its last request: flush, in that worker process."""
    if isinstance(app, Flask):
        flushed = flush_all(app)
        if flushed:
            log.info("flushed %d buffer(s) before exit", flushed)
