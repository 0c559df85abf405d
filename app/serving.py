"""The production WSGI server: gunicorn, configured as the benchmark measures it."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


def _flush_legacy_usage(_arbiter: Any, _worker: Any) -> None:
    """A stopping worker writes its buffered legacy-key usage counts (atexit also does)."""
    from app.services.legacy import flush_all

    flush_all()


SERVER_SETTINGS: dict[str, Any] = {
    "worker_class": "gthread",
    "threads": 4,
    "keepalive": 5,
    "backlog": 2048,
    "graceful_timeout": 30,
    "timeout": 30,
    "accesslog": None,
    "control_socket_disable": True,
    "worker_exit": _flush_legacy_usage,
}


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


def run(bind: str, workers: int) -> None:
    KeymintServer({**SERVER_SETTINGS, "bind": bind, "workers": workers}).run()
