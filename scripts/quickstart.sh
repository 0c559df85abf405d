#!/usr/bin/env bash
# Set up keymint on SQLite in ./instance, create a demo user/workspace/key, serve on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e .
# Plain HTTP is acceptable only because we bind to loopback; production runs behind TLS.
export AUTHLIB_INSECURE_TRANSPORT=1
export KEYMINT_ISSUER=${KEYMINT_ISSUER:-http://127.0.0.1:${PORT:-8000}}
# The console's KEYMINT_SECRET_KEY: made once into the instance folder (readable by this user
# only) and reused, so console sign-ins survive restarts and every worker shares it.
if [ -z "${KEYMINT_SECRET_KEY:-}" ]; then
  mkdir -p instance
  if [ ! -s instance/secret_key ]; then
    (umask 077 && .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(32))" \
      > instance/secret_key)
  fi
  KEYMINT_SECRET_KEY=$(cat instance/secret_key)
  export KEYMINT_SECRET_KEY
fi
.venv/bin/keymint db upgrade
.venv/bin/keymint demo --port "${PORT:-8000}"
exec .venv/bin/keymint serve --bind "127.0.0.1:${PORT:-8000}" --workers "${WORKERS:-2}"
