"""Alembic scripts of keymint, installed as the package app.migrations."""
