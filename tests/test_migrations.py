"""The Alembic revisions produce exactly the models' schema, and downgrade/upgrade cleanly."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app.extensions import db
from app.models import Base


def _diff(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_match_models(app):
    assert _diff(app) == []


def test_downgrade_base_then_upgrade_head(app):
    with app.app_context():
        downgrade(revision="base")
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade()
        assert {"users", "api_keys", "access_tokens", "audit_events"} <= set(
            inspect(db.engine).get_table_names())
    assert _diff(app) == []
