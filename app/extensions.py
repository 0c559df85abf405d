"""Unbound Flask extensions, bound to an app in create_app()."""

from flask import Flask, request
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from app.models.base import Base

db = SQLAlchemy(model_class=Base, engine_options={"pool_pre_ping": True})
migrate = Migrate()


class KeymintLimiter(Limiter):
    """Flask-Limiter, re-initialisable: one process may build several apps (tests, CLI).

    Flask-Limiter keeps some per-app state on the extension object; each init_app starts from
    a clean slate so one app's dead Redis or disabled limiter never leaks into the next app.
    """

    def init_app(self, app: Flask) -> None:
        from app.ratelimit_storage import SweptMemoryStorage, storage_uri

        self.enabled = bool(app.config.get("RATELIMIT_ENABLED", True))
        self._storage_dead = False
        app.config["RATELIMIT_STORAGE_URI"] = storage_uri(app.config.get(
            "RATELIMIT_STORAGE_URI") or "memory://")
        super().init_app(app)
        # The fallback used while Redis is down is a plain MemoryStorage; swap in the swept one.
        if self._fallback_limiter is not None:
            self._fallback_storage = SweptMemoryStorage()
            self._fallback_limiter = type(self._fallback_limiter)(self._fallback_storage)
        # Every keymint limit is declared on its view (app/api/ratelimit.py) and checked by
        # that decorator. Flask-Limiter's own before_request check exists for default,
        # application and blueprint limits; keymint has none, yet it resolves them on every
        # request (~70 µs, /healthz included). Drop it for as long as there are none.
        manager = self.limit_manager
        if not (manager._application_limits or manager._default_limits
                or manager._blueprint_limits or self._meta_limits):
            hooks = app.before_request_funcs.get(None, [])
            app.before_request_funcs[None] = [
                hook for hook in hooks if hook != self._check_request_limit]


def _socket_ip() -> str:
    return request.remote_addr or "unknown"


# Every keymint limit names its own key function (app/api/ratelimit.py); this default only
# covers limits declared without one. Strategy, fallback and error handling come from config.
limiter = KeymintLimiter(
    _socket_ip,
    strategy="sliding-window-counter",
    in_memory_fallback_enabled=True,
    swallow_errors=True,
    headers_enabled=False,
)
