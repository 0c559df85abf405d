"""The application factory: configuration, extensions, blueprints, errors and CLI."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "migrations")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from app import audit_log, cli, database
    from app.api import audit, context, errors, me, oauth, ops
    from app.config import build_config
    from app.extensions import db, migrate
    from app.oauth import endpoints, grants, server

    app = Flask(__name__, instance_relative_config=True)
    app.config.update(build_config(config, app.instance_path))

    proxies = app.config["KEYMINT_TRUSTED_PROXIES"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    database.configure_engine_events()
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)

    server.authorization.init_app(app)
    server.authorization.register_grant(grants.KeyClientCredentialsGrant)
    server.authorization.register_endpoint(endpoints.KeyIntrospectionEndpoint)
    server.authorization.register_endpoint(endpoints.KeyRevocationEndpoint)
    server.authorization.register_endpoint(endpoints.TokenRotationEndpoint)

    context.init_app(app)
    for blueprint in (oauth.bp, me.bp, audit.bp, ops.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    audit_log.init_app(app)
    cli.register(app)
    return app
