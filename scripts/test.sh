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
# The OpenID provider the console's single sign-on tests run (node-oidc-provider): its
# locked dependencies, installed once (again only when the lock file changes). Without npm
# those tests skip (under CI=true they fail).
if command -v npm >/dev/null 2>&1 && [ ! tests/oidc_provider/node_modules/.package-lock.json \
     -nt tests/oidc_provider/package-lock.json ]; then
  npm ci --prefix tests/oidc_provider --no-audit --no-fund --loglevel=error >/dev/null
fi
.venv/bin/ruff check .
exec .venv/bin/pytest -n "${TEST_WORKERS:-2}" "$@"
