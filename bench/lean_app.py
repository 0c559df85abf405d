"""The lean floor: the least work an honest introspection can do on keymint's own stack.

One route, ``POST /oauth/introspect``, on a bare Flask app served exactly like
bench/floor_app.py (bench/serve_floor.py, i.e. keymint's Granian settings)::

    KEYMINT_DATABASE_URL=sqlite:////tmp/km.sqlite3 \\
        .venv/bin/python bench/serve_floor.py --target lean_app:app --bind 127.0.0.1:9250

It answers from keymint's real tables (the database keymint serves, KEYMINT_DATABASE_URL,
``sqlite:///…`` or ``postgresql+psycopg://…``) what keymint's introspection answers for a
client_secret_basic caller, with only what that needs and none of keymint's machinery: HTTP
Basic parsed by hand (base64, then percent-decoding, RFC 6749 §2.3.1), the secret and the token
hashed as keymint hashes them (app.credentials.digest), ONE joined SELECT on the raw DBAPI
driver (sqlite3, or psycopg in autocommit; one connection per server thread, statements
prepared by the driver), the secret compared in constant time against every live secret of the
key, and RFC 7662 JSON out. No ORM, no SQLAlchemy, no Authlib, no rate limit, no log line, no
metrics, no audit, no last-used bookkeeping: what keymint spends beyond this is its own.

It decides what keymint decides (app/services/tokens.py ``_CALLER_AND_TOKEN_QUERY`` and
``TokenInfo.is_active``, app/services/keys.py ``CREDENTIAL_QUERY``): the caller's key
unrevoked and unexpired, its owner active and still a member, a live (unrevoked, unexpired)
secret of it matching; the key holding the ``introspect`` scope; the token unrevoked and
unexpired, its key, the secret that minted it, its owner and the owner's membership all
still live, its scopes all still held by its key, and in the caller's workspace. The time
checks run in SQL against the request's ``now``; a token that fails any of them is no row of
the derived table, which answers ``{"active": false}``. Not done (keymint's own extras, not
part of deciding the answer): the token's checksum (a value that fails it matches no digest
either, so it is merely looked up instead of refused without a query), the legacy-key
fallback, client_secret_post, and the request-shape guards (duplicated parameters, content
type). bench/check_lean.py checks, state by state, that both answer the same.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from flask import Flask, request

from app.credentials import DUMMY_SECRET_DIGEST, digest

INTROSPECT_SCOPE = "introspect"
ACTIVE_USER = "active"  # app.models.accounts.UserStatus.ACTIVE

# The caller (one row per live secret of its key) and, beside it, the token with every fact
# its activity depends on, decided together; :now is the request's time. A token that is not
# active, or not in the caller's workspace, leaves the token's columns (t.*) NULL.
_SQL = """
SELECT k.scopes, s.digest,
       t.jti, t.scopes, t.client_id, t.user_id, t.email, t.workspace_id, t.iat, t.exp,
       t.key_scopes
FROM api_keys k
JOIN users u ON u.id = k.user_id
JOIN memberships m ON m.user_id = k.user_id AND m.workspace_id = k.workspace_id
JOIN key_secrets s ON s.key_id = k.id AND s.revoked_at IS NULL
     AND (s.expires_at IS NULL OR s.expires_at > :now)
LEFT JOIN (
    SELECT a.jti, a.scopes, tk.client_id, a.user_id, tu.email, a.workspace_id,
           {iat} AS iat, {exp} AS exp, tk.scopes AS key_scopes
    FROM access_tokens a
    JOIN api_keys tk ON tk.id = a.key_id
    JOIN users tu ON tu.id = a.user_id
    JOIN memberships tm ON tm.user_id = a.user_id AND tm.workspace_id = a.workspace_id
    LEFT JOIN key_secrets ts ON ts.id = a.secret_id
    WHERE a.digest = :digest
      AND a.revoked_at IS NULL AND a.expires_at > :now
      AND tk.revoked_at IS NULL AND (tk.expires_at IS NULL OR tk.expires_at > :now)
      AND tu.status = '{active}'
      AND (a.secret_id IS NULL
           OR (ts.revoked_at IS NULL AND (ts.expires_at IS NULL OR ts.expires_at > :now)))
) t ON t.workspace_id = k.workspace_id
WHERE k.client_id = :client_id AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > :now) AND u.status = '{active}'
"""
# Epoch seconds, truncated like app.clock.epoch (int(datetime.timestamp())).
_EPOCH = {
    "sqlite": "CAST(strftime('%s', a.{col}) AS INTEGER)",
    "postgresql": "CAST(floor(extract(epoch FROM a.{col})) AS BIGINT)",
}


def _statement(dialect: str) -> str:
    sql = _SQL.format(iat=_EPOCH[dialect].format(col="issued_at"),
                      exp=_EPOCH[dialect].format(col="expires_at"), active=ACTIVE_USER)
    if dialect == "postgresql":
        sql = sql.replace("%", "%%")
        sql = re.sub(r":(now|digest|client_id)\b", r"%(\1)s", sql)
    return sql


def _sqlite_now() -> str:
    # keymint's SQLite columns hold naive UTC text in SQLAlchemy's format, microseconds always
    # written (app.models.base.UTCDateTime), so text order is time order.
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_now() -> datetime:
    return datetime.now(UTC)


def _database(url: str) -> tuple[str, Any, Any]:
    """(dialect, connect() for one thread, now())."""
    url = url.strip()
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        import sqlite3

        path = url[len("sqlite:///"):].split("?", 1)[0]

        def connect_sqlite() -> Any:
            conn = sqlite3.connect(path, isolation_level=None)  # a SELECT opens no transaction
            conn.execute("PRAGMA busy_timeout=5000")  # as keymint's engine (WAL is the file's)
            return conn

        return "sqlite", connect_sqlite, _sqlite_now
    if url.startswith(("postgresql+psycopg://", "postgresql://")):
        import psycopg

        conninfo = "postgresql://" + url.split("://", 1)[1]

        def connect_pg() -> Any:
            return psycopg.connect(conninfo, autocommit=True)  # no BEGIN/COMMIT round trips

        return "postgresql", connect_pg, _pg_now
    raise RuntimeError(
        "lean_app: KEYMINT_DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://… "
        f"(got {url[:40]!r})")


DIALECT, _connect, _now = _database(os.environ.get("KEYMINT_DATABASE_URL", ""))
SQL = _statement(DIALECT)
ISSUER = os.environ.get("KEYMINT_ISSUER", "").rstrip("/")
# Without KEYMINT_ISSUER, the URL the request reached, built once per (scheme, host, root
# path) as keymint does (app/web/context.py issuer()); bounded, the Host is the client's.
_issuers: dict[tuple[str, str, str], str] = {}
_local = threading.local()

JSON_HEADERS = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                ("Pragma", "no-cache")]
INACTIVE = json.dumps({"active": False})
_CHALLENGE = [*JSON_HEADERS, ("WWW-Authenticate", 'Basic realm="keymint"')]
INVALID_CLIENT = (
    json.dumps({"error": "invalid_client", "error_description": "Client authentication failed."}),
    401, _CHALLENGE)
NO_CLIENT = (
    json.dumps({"error": "invalid_client",
                "error_description": "Client authentication is required."}),
    401, _CHALLENGE)
INSUFFICIENT_SCOPE = (
    json.dumps({"error": "insufficient_scope",
                "error_description": "Introspection needs a key with the 'introspect' scope."}),
    403, JSON_HEADERS)
MISSING_TOKEN = (
    json.dumps({"error": "invalid_request", "error_description": "Missing 'token' parameter."}),
    400, JSON_HEADERS)


def _basic(header: str | None) -> tuple[str, str] | bool | None:
    """(client_id, secret) of an HTTP Basic header (base64, then percent-decoding); None if
    there is none, False if it cannot be read."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    return unquote(user), unquote(password)


def _issuer() -> str:
    if ISSUER:
        return ISSUER
    where = (request.scheme, request.host, request.root_path)
    found = _issuers.get(where)
    if found is None:
        if len(_issuers) >= 64:
            _issuers.clear()
        found = _issuers[where] = request.url_root.rstrip("/")
    return found


def _rows(params: dict[str, Any]) -> list[tuple]:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    try:
        return conn.execute(SQL, params).fetchall()
    except Exception:
        # A broken connection is not reused: the next request on this thread opens another.
        _local.conn = None
        conn.close()
        raise


app = Flask(__name__)


@app.post("/oauth/introspect")
def introspect():
    creds = _basic(request.headers.get("Authorization"))
    if not creds:
        return NO_CLIENT if creds is None else INVALID_CLIENT
    client_id, secret = creds
    token = request.form.get("token")
    rows = _rows({"client_id": client_id, "digest": digest(token or ""), "now": _now()})
    # Every live secret is compared, and an unknown client against a dummy digest, so unknown
    # client and wrong secret cost the same (as keymint's match_secret).
    presented = digest(secret)
    matched = False
    for row in rows or ((None, DUMMY_SECRET_DIGEST),):
        if hmac.compare_digest(row[1], presented):
            matched = True
    if not rows or not matched:
        return INVALID_CLIENT
    row = rows[0]
    if INTROSPECT_SCOPE not in row[0].split():
        return INSUFFICIENT_SCOPE
    if not token:
        return MISSING_TOKEN
    jti, scopes = row[2], row[3]
    if jti is None or not set(row[10].split()).issuperset(scopes.split()):
        return INACTIVE, 200, JSON_HEADERS
    return json.dumps({
        "active": True,
        "scope": scopes,
        "client_id": row[4],
        "sub": str(row[5]),
        "username": row[6],
        "token_type": "Bearer",
        "exp": row[9],
        "iat": row[8],
        "jti": jti,
        "iss": _issuer(),
        "workspace_id": str(row[7]),
    }), 200, JSON_HEADERS
