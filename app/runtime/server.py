"""The production WSGI server: Granian, configured as the benchmark measures it.

Also what keymint adds around Granian: its log lines are keymint's redacted JSON (and its
access log stays off: keymint logs each request itself, without the query string); each
worker runs the shutdown flushes of app.runtime.lifecycle itself, after its last request; and with
several workers the Prometheus metrics of all of them are collected through a multiprocess
directory that lives as long as the server. (The `Server: keymint` header is set by the app,
app/web/context.py: Granian sends `server: granian` only when the response names none.)
"""

from __future__ import annotations

import functools
import glob
import importlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer, WorkerProcess

from app.runtime import lifecycle, metrics

DEFAULT_PORT = 8000

# Granian's own lines (the `_granian` logger, Rust side included) through keymint's formatter
# and redactor, on stderr. The access logger gets no output at all: keymint writes one line
# per request itself (app/web/telemetry.py), with the path but never the query string.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "app.runtime.logs.JsonFormatter"}},
    "filters": {"redact": {"()": "app.runtime.logs.RedactingFilter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                   "formatter": "json", "filters": ["redact"]},
        "none": {"class": "logging.NullHandler"},
    },
    "loggers": {
        "_granian": {"handlers": ["stderr"], "propagate": False},
        "granian.access": {"handlers": ["none"], "propagate": False},
    },
}

# Keyword arguments of granian's server, as measured in bench/server-choice.md.
GRANIAN_SETTINGS: dict[str, Any] = {
    "interface": Interfaces.WSGI,
    # Two Python threads per worker overlap database waits; more only add GIL contention.
    "blocking_threads": 2,
    "backlog": 2048,
    "http": HTTPModes.http1,  # HTTP/2 and TLS are the proxy's job
    "http1_settings": HTTP1Settings(
        keep_alive=True,
        # Headers must arrive within 30 s; an idle keep-alive connection is closed then too.
        header_read_timeout=30_000,
        # Request line + headers over 16 KiB: 431 before keymint runs (gunicorn refused a
        # header line over 8 KiB). Bodies are streamed, not held to this.
        max_buffer_size=16_384,
    ),
    "websockets": False,
    "log_level": LogLevels.info,
    "log_dictconfig": LOG_CONFIG,
    "log_access": False,
    # A worker that dies is replaced (gunicorn's default; Granian's only when asked).
    "respawn_failed_workers": True,
    # SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to 30 s, then the
    # worker runs its shutdown flushes (_wsgi_worker) and exits; after 30 s it is killed.
    "workers_kill_timeout": 30,
}

WsgiTarget = str | Callable[[], Any]

# Granian's WSGI worker body without its process wrapper; _wsgi_worker runs it and then
# keymint's exit work in the same process. Not a public Granian API: pyproject pins granian
# to a minor version, and tests/faults/test_graceful_shutdown.py fails if this stops working.
_granian_wsgi_worker: Callable[..., None] = MPServer._spawn_wsgi_worker.__wrapped__


@WorkerProcess.wrap_target
def _wsgi_worker(worker_id: int, callback: Any, *args: Any) -> None:
    try:
        # Returns once the worker was told to stop and its in-flight requests are done.
        _granian_wsgi_worker(worker_id, callback, *args)
    finally:
        lifecycle.worker_exit(callback)
        # The main process cannot watch a worker's exit under Granian; the worker marks itself.
        metrics.mark_process_dead(os.getpid())


# Granian's processes wait for these in a blocking lock wait of their main thread, and act on
# them in a Python signal handler. The kernel may hand a process-directed signal to any thread;
# taken by a Rust or request thread (strace showed it), it runs no Python handler and wakes
# nobody: a SIGINT to the process group (Ctrl-C) left the worker waiting in 5 runs of 8, until
# it was killed after 30 s without its shutdown flush. So every thread blocks them, and one
# thread takes them with sigwait() and calls the handler Granian installed.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def take_stop_signals_in_one_thread() -> None:
    """Block STOP_SIGNALS in this thread (and every thread or process it starts later) and
    deliver them from a dedicated thread to the handlers this process installs."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_relay_stop_signals, name="keymint-signals", daemon=True).start()


def _relay_stop_signals() -> None:
    while True:
        signum = signal.sigwait(STOP_SIGNALS)
        handler = signal.getsignal(signum)
        if handler == signal.SIG_IGN:
            continue
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signum, None)
        else:  # no handler installed (yet): what the signal would have done
            os._exit(128 + signum)


# WSGI environ keys that describe the request. Granian starts every request's environ from a
# copy of the worker's os.environ, so a server environment variable such as
# HTTP_AUTHORIZATION or REMOTE_USER would read as request data whenever the client did not
# send that header itself (HTTP_PROXY, set on many hosts, would arrive as a `Proxy` header).
_REQUEST_ENVIRON_KEYS = frozenset({"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "PATH_INFO",
                                   "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_USER",
                                   "REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT",
                                   "SERVER_PROTOCOL"})


def scrub_request_keys_from_environment() -> list[str]:
    """Drop request-describing variables from this (worker) process's environment.

    keymint makes no outbound HTTP requests, so HTTP_PROXY and friends have no other use here.
    Returns the names removed.
    """
    names = [name for name in os.environ
             if name.upper().startswith("HTTP_") or name.upper() in _REQUEST_ENVIRON_KEYS]
    for name in names:
        del os.environ[name]
    return names


def _load(target: WsgiTarget) -> Any:
    """In the worker: call the factory, or import "module:attribute" (default attribute app)."""
    # The mask is inherited from the main process; the relay thread is not.
    take_stop_signals_in_one_thread()
    scrub_request_keys_from_environment()  # before Granian copies the environment
    if not isinstance(target, str):
        return target()
    module_name, _, attribute = target.partition(":")
    loaded: Any = importlib.import_module(module_name)
    for name in (attribute or "app").split("."):
        loaded = getattr(loaded, name)
    return loaded


def parse_bind(bind: str) -> dict[str, Any]:
    """gunicorn-style --bind: HOST:PORT, HOST (port 8000), [IPv6]:PORT or unix:PATH."""
    if bind.startswith("unix:"):
        return {"uds": Path(bind.removeprefix("unix:"))}
    host, port = bind, DEFAULT_PORT
    if bind.startswith("["):
        closing = bind.index("]")
        host, rest = bind[1:closing], bind[closing + 1:]
        if rest:
            port = int(rest.removeprefix(":"))
    elif bind.count(":") == 1:
        host, _, given = bind.partition(":")
        port = int(given)
    return {"address": host or "0.0.0.0", "port": port}  # noqa: S104 (what ":8000" means)


def prepare_metrics_dir() -> tuple[str, bool]:
    """The multiprocess metrics directory: the operator's PROMETHEUS_MULTIPROC_DIR (emptied of
    stale files) or a fresh temporary one that the server removes on exit."""
    given = metrics.multiprocess_dir()
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        return given, False
    return tempfile.mkdtemp(prefix="keymint-metrics-"), True


def serve_wsgi(target: WsgiTarget, *, bind: str, workers: int) -> None:
    """Serve a WSGI app with keymint's server settings until SIGTERM/SIGINT.

    `target` is "module:attribute" naming the WSGI app, or a factory returning one; either is
    loaded in each worker process. A Flask app's lifecycle flushes run in the worker after its
    last request. Blocks until the server has stopped.
    """
    take_stop_signals_in_one_thread()
    directory, owned = prepare_metrics_dir()
    metrics.enable_multiprocess(directory)  # before the workers are forked
    name = target if isinstance(target, str) else getattr(target, "__qualname__", "factory")
    server = MPServer(name, workers=workers, **parse_bind(bind), **GRANIAN_SETTINGS)
    try:
        server.serve(spawn_target=_wsgi_worker, target_loader=functools.partial(_load, target),
                     wrap_loader=False)
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)

