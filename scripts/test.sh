#!/usr/bin/env bash
# Run the whole test suite (lint + pytest on SQLite, and PostgreSQL when configured).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[dev]'
# The resource-server library is its own distribution (clients/python); installing it from
# this checkout also proves it builds on its own.
.venv/bin/pip install --quiet -e './clients/python[flask]'
.venv/bin/ruff check .
exec .venv/bin/pytest -n "${TEST_WORKERS:-2}" "$@"
