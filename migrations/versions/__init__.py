"""Alembic revisions of keymint, one module per revision."""
