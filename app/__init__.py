"""The application factory: configuration, extensions, blueprints, errors and CLI."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

_SOURCE_MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "migrations")


def migrations_dir() -> str:
    """The Alembic scripts: the source checkout's migrations/ next to this app/ when there is
    one, else the installed package app.migrations (a wheel maps the top-level migrations/
    there); never the working directory. The checkout first: an editable install's finder
    maps app.migrations to the checkout it was installed from, which is not this one when
    the code runs from another worktree."""
    if os.path.isfile(os.path.join(_SOURCE_MIGRATIONS, "env.py")):
        return _SOURCE_MIGRATIONS
    try:
        return str(resources.files("app.migrations"))
    except ModuleNotFoundError:  # a source checkout: app/ and migrations/ are siblings
        return _SOURCE_MIGRATIONS


MIGRATIONS_DIR = migrations_dir()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from app import cli
    from app.api import (
        audit,
        fast_me,
        invitations,
        keys,
        legacy,
        me,
        members,
        openapi,
        resources,
        workspace,
    )
    from app.api import webhooks as webhooks_api
    from app.config import build_config
    from app.console import init_app as init_console
    from app.extensions import db, migrate
    from app.oauth import endpoints, fast_introspection, grants, routes, server
    from app.runtime import audit_mirror, audit_switch, database, legacy_usage_buffer, logs, metrics
    from app.web import boundary, context, errors, guards, ops, rate_limits, telemetry

    # No app-wide static files: the API's routes are documented in /openapi.json; the
    # console serves its own stylesheet and script (/console/static/).
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.update(build_config(config, app.instance_path))
    logs.configure(app.config["KEYMINT_LOG_LEVEL"])

    # Fast paths innermost: ProxyFix and the body limit run before them.
    fast_introspection.init_app(app)
    fast_me.init_app(app)
    proxies = app.config["KEYMINT_TRUSTED_PROXIES"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", database.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["KEYMINT_DATABASE_CONNECT_TIMEOUT"]))
    database.configure_engine_events()
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)

    server.authorization.init_app(app)
    server.authorization.register_grant(grants.KeyClientCredentialsGrant)
    server.authorization.register_endpoint(endpoints.KeyIntrospectionEndpoint)
    server.authorization.register_endpoint(endpoints.KeyRevocationEndpoint)
    server.authorization.register_endpoint(endpoints.TokenRotationEndpoint)

    metrics.install_session_hooks()
    rate_limits.init_app(app)

    context.init_app(app)
    telemetry.init_app(app)
    guards.init_app(app)
    for blueprint in (routes.bp, me.bp, ops.bp, keys.bp, members.bp, workspace.bp, openapi.bp,
                      audit.bp, invitations.bp, resources.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(webhooks_api.bp)
    legacy_usage_buffer.init_app(app)  # before legacy: its views count uses in the buffer
    legacy.init_app(app)  # legacy-keys blueprint, X-API-Key guard, introspection hook
    init_console(app)  # before the boundary: its pages' hook runs after the boundary's
    errors.register(app)
    boundary.init_app(app)  # the last after_request hook: it runs first (see boundary)
    audit_switch.init_app(app)
    audit_mirror.init_app(app)
    cli.register(app)
    return app
