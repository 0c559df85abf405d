"""The production WSGI server: gunicorn, configured as the benchmark measures it.

Also what keymint changes in gunicorn: its logs are keymint's redacted JSON lines (and its
access log stays off: keymint logs each request itself, without the query string), the
`Server` header names no software version, and with several workers the Prometheus metrics
of all of them are collected through a multiprocess directory that lives as long as the server.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Any

import gunicorn.http.wsgi
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from app import logs, metrics
from app.lifecycle import gunicorn_worker_exit

SERVER_HEADER = "keymint"


SERVER_SETTINGS: dict[str, Any] = {
    "worker_class": "gthread",
    "threads": 4,
    "keepalive": 5,
    "backlog": 2048,
    # SIGTERM: stop accepting, let in-flight requests finish for up to 30 s, then run the
    # shutdown flushes (app.lifecycle) in worker_exit.
    "graceful_timeout": 30,
    "timeout": 30,
    "accesslog": None,
    "control_socket_disable": True,
    "worker_exit": gunicorn_worker_exit,
}


class KeymintGunicornLogger(Logger):
    """gunicorn's logger, writing keymint's redacted JSON lines; no access log of its own."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(logs.JsonFormatter())
                handler.addFilter(logs.RedactingFilter())

    def access(self, resp, req, environ, request_time) -> None:
        # gunicorn's access line holds the raw request line, query string included; keymint's
        # own request log (app/api/telemetry.py) records method, path and status instead.
        return None


def _child_exit(_server, worker) -> None:
    metrics.mark_process_dead(worker.pid)


class KeymintServer(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            if name in self.cfg.settings and value is not None:
                self.cfg.set(name, value)

    def load(self):
        from app import create_app

        return create_app()


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


def run(bind: str, workers: int) -> None:
    # gunicorn answers with "Server: gunicorn"; name the service, not the software.
    gunicorn.http.wsgi.SERVER = SERVER_HEADER
    directory, owned = prepare_metrics_dir()
    metrics.enable_multiprocess(directory)
    master = os.getpid()
    try:
        KeymintServer({**SERVER_SETTINGS, "bind": bind, "workers": workers,
                       "logger_class": KeymintGunicornLogger,
                       "child_exit": _child_exit}).run()
    finally:
        # Workers leave through this frame too (SystemExit after fork); only the master cleans.
        if owned and os.getpid() == master:
            shutil.rmtree(directory, ignore_errors=True)
