"""Test support (plain helpers, no fixtures): factories, token minting, servers, database reads.

Fixtures live in the conftest.py files; everything they and the tests share is here. The
PostgreSQL-cluster machinery of the fault tests is in tests/faults/support.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("KEYMINT_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
GRANT = {"grant_type": "client_credentials"}
ALL_SCOPES = ("introspect keys:read keys:write members:read members:write audit:read "
              "webhooks:read webhooks:write")

# --- databases -----------------------------------------------------------------------------


def worker_db_name() -> str:
    """Unique per checkout and xdist worker, so parallel runs never drop each other's DB."""
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    return f"keymint_test_{checkout}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest Alembic revision."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "KEYMINT_RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade()
        db.engine.dispose()


def base_config(url: str, **overrides: Any) -> dict[str, Any]:
    """The app configuration of the functional tests: rate limits off (tests/test_ratelimit.py
    switches them on where they are under test)."""
    return {"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "KEYMINT_RATELIMIT_ENABLED": False,
            **overrides}


def dispose(app: Any) -> None:
    """Close the app's session and pool, so no connection outlives the test that made it."""
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- users, workspaces and keys --------------------------------------------------------------


@dataclass
class KeyHandle:
    """A key made by Factory.key: its credentials, and the workspace and user it belongs to."""

    client_id: str
    secret: str
    workspace: str
    email: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)


Credentials = KeyHandle | tuple[str, str]


class Factory:
    """Builds users, workspaces and keys through the services, committing each step.

    Tokens are not made here: `mint` gets them from the real /oauth/token endpoint.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def user(self, email: str | None = None) -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        email = email or f"user{self._next()}@example.com"
        with self.app.app_context():
            accounts.create_user(db.session, email, Actor.cli())
            db.session.commit()
        return email

    def workspace(self, owner: str | None = None, slug: str | None = None, **policy: Any) -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        owner = owner or self.user()
        slug = slug or f"ws{self._next()}"
        with self.app.app_context():
            user = accounts.get_user_by_email(db.session, owner)
            ws = accounts.create_workspace(db.session, slug, user, Actor.cli())
            for name, value in policy.items():
                setattr(ws, name, value)
            db.session.commit()
        return slug

    def member(self, slug: str, email: str | None = None, role: str = "member") -> str:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        email = email or self.user()
        with self.app.app_context():
            ws = accounts.get_workspace(db.session, slug)
            user = accounts.get_user_by_email(db.session, email)
            accounts.add_member(db.session, ws, user, role, Actor.cli())
            db.session.commit()
        return email

    def key(self, slug: str | None = None, email: str | None = None,
            scopes: str = "introspect keys:read", **kwargs: Any) -> KeyHandle:
        from app.extensions import db
        from app.services import accounts, keys
        from app.services.audit import Actor

        if slug is None:
            email = email or self.user()
            slug = self.workspace(owner=email)
        elif email is None:
            email = self.member(slug)
        with self.app.app_context():
            ws = accounts.get_workspace(db.session, slug)
            user = accounts.get_user_by_email(db.session, email)
            created = keys.create_key(db.session, ws, user, Actor.cli(),
                                      name=kwargs.pop("name", "test key"), scopes=scopes,
                                      **kwargs)
            db.session.commit()
            return KeyHandle(created.key.client_id, created.client_secret, slug, email)


ORDERS = "https://orders.example.com"
REPORTS = "https://reports.example.com"
ORDER_ROUTES = {"default": "deny", "routes": [
    {"method": "GET", "path": "/v1/orders", "scopes": ["orders:read"]},
    {"method": "GET", "path": "/v1/orders/{id}", "scopes": ["orders:read"]},
    {"method": "GET", "path": "/v1/orders/{id}/items", "scopes": ["orders:items"]},
    {"method": "POST", "path": "/v1/orders", "scopes": ["orders:write"]},
]}


def add_resource(app: Any, uri: str, scopes: str, routes: dict[str, Any] | None = None,
                 name: str = "an API") -> str:
    """Register a resource through the service (as `keymint resources create` does)."""
    from app.extensions import db
    from app.services import resources
    from app.services.audit import Actor

    with app.app_context():
        resources.create_resource(db.session, Actor.cli(), uri=uri, name=name, scopes=scopes,
                                  routes=routes)
        db.session.commit()
    return uri


def user_id(app: Any, email: str) -> str:
    """The id of the user `email`, as the API shows it (a string)."""
    from app.extensions import db
    from app.services import accounts

    with app.app_context():
        return str(accounts.get_user_by_email(db.session, email).id)


# --- requests: to a Flask test client or to a real server process ----------------------------


def _auth(credentials: Credentials | None) -> tuple[str, str] | None:
    return credentials.auth if isinstance(credentials, KeyHandle) else credentials


def _json(response: Any) -> Any:
    """The JSON body of a Flask test response or of a requests.Response."""
    return response.get_json() if hasattr(response, "get_json") else response.json()


def post(target: Any, path: str, data: dict[str, Any], auth: Credentials | None = None,
         timeout: float = 10) -> Any:
    """POST a form to `target`: a Flask test client, or a ServerProcess over real HTTP."""
    if isinstance(target, ServerProcess):
        return requests.post(target.url + path, data=data, auth=_auth(auth), timeout=timeout)
    return target.post(path, data=data, auth=_auth(auth))


def token_response(target: Any, key: Credentials, **data: str) -> Any:
    """The answer of /oauth/token to a client_credentials request: for tests of that answer."""
    return post(target, "/oauth/token", {**GRANT, **data}, key)


def mint(target: Any, key: Credentials, scope: str | None = None) -> str:
    """An access token for `key` from the real /oauth/token endpoint: the one way tests get one."""
    response = token_response(target, key, **({"scope": scope} if scope is not None else {}))
    assert response.status_code == 200, response.text
    return _json(response)["access_token"]


def introspect(target: Any, caller: Credentials, token: str) -> dict[str, Any]:
    """The /oauth/introspect answer about `token`, asked by `caller` (which must succeed)."""
    response = post(target, "/oauth/introspect", {"token": token}, caller)
    assert response.status_code == 200, response.text
    return _json(response)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- management API: a workspace with people in every role ----------------------------------


@dataclass
class Person:
    """A member of a Team: their user id, their key and a token of it."""

    email: str
    user_id: str
    key: KeyHandle
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Team:
    """One workspace with people in each role, each holding a key with every scope."""

    slug: str
    people: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Person:
        return self.people[role]


def make_team(client: Any, factory: Factory, scopes: str = ALL_SCOPES, **policy: Any) -> Team:
    """A new workspace (with `policy`) and its owner, an admin and a member, each with a token."""
    owner = factory.user()
    team = Team(factory.workspace(owner=owner, **policy))
    add_person(client, factory, team, "owner", scopes=scopes, email=owner)
    for role in ("admin", "member"):
        add_person(client, factory, team, role, role=role, scopes=scopes)
    return team


def add_person(client: Any, factory: Factory, team: Team, name: str, role: str = "member",
               scopes: str = ALL_SCOPES, email: str | None = None) -> Person:
    """A new member of `team` in `role` (or the existing user `email`) with a key and a token."""
    email = email or factory.member(team.slug, role=role)
    key = factory.key(team.slug, email, scopes=scopes)
    person = Person(email, user_id(factory.app, email), key, mint(client, key))
    team.people[name] = person
    return person


# --- reading the database ----------------------------------------------------------------------


def all_rows(app: Any, table: str) -> list[dict[str, Any]]:
    """Every row of `table` as stored (raw column values, no ORM conversion)."""
    from app.extensions import db

    with app.app_context():
        rows = db.session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 (test-only, fixed names)
        return [dict(r._mapping) for r in rows]


def audit_actions(app: Any) -> list[str]:
    return [r["action"] for r in sorted(all_rows(app, "audit_events"), key=lambda r: r["id"])]


def audit_events(app: Any, action: str | None = None) -> list[Any]:
    """AuditEvent rows (detached, oldest first), of one action if given."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import AuditEvent

    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        events = list(db.session.scalars(query))
        db.session.expunge_all()
        return events


# --- legacy keys -------------------------------------------------------------------------------

SUNSET = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)  # the default, announced date
DEPRECATED_AT = datetime(2025, 1, 1, tzinfo=UTC)
# Counters are flushed only when a test says so (no timer, no threshold in the way).
QUIET_BUFFER = {"KEYMINT_LEGACY_FLUSH_INTERVAL": 3600,
                "KEYMINT_LEGACY_FLUSH_THRESHOLD": 1_000_000}


def add_legacy_key(app: Any, slug: str, key: str, label: str = "old integration") -> int:
    """Import `key` into workspace `slug` as `keymint legacy import` does; returns its id."""
    from app import credentials
    from app.extensions import db
    from app.models import LegacyKey
    from app.services import legacy_import
    from app.services.audit import Actor

    with app.app_context():
        legacy_import.import_keys(db.session, [legacy_import.ImportRow(2, slug, key, label)],
                                  Actor.cli())
        db.session.commit()
        return db.session.query(LegacyKey.id).filter_by(digest=credentials.digest(key)).scalar()


def flush(app: Any) -> int:
    """Write the app's buffered legacy-key usage counts now."""
    return app.extensions["keymint_legacy_usage"].flush()


def legacy_row(app: Any, legacy_id: int) -> dict[str, Any]:
    """The legacy_keys row `legacy_id`, column name -> value, as the ORM reads it."""
    from app.extensions import db
    from app.models import LegacyKey

    with app.app_context():
        row = db.session.get(LegacyKey, legacy_id)
        data = {c.name: getattr(row, c.key) for c in LegacyKey.__table__.columns}
        db.session.rollback()
        return data


def set_disabled(app: Any, legacy_id: int) -> None:
    """Disable the legacy key `legacy_id` through the service, as `keymint legacy disable` does."""
    from app.extensions import db
    from app.services import legacy
    from app.services.audit import Actor

    with app.app_context():
        legacy.disable_key(db.session, legacy.get_key(db.session, legacy_id), Actor.cli())
        db.session.commit()


def me(client: Any, key: str, **kwargs: Any) -> Any:
    """GET /api/v1/me authenticated by the legacy key `key` (X-API-Key)."""
    return client.get("/api/v1/me", headers={"X-API-Key": key, **kwargs.pop("headers", {})},
                      **kwargs)


# --- real server processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class ServerProcess:
    """A real `keymint serve` process on loopback, stopped by the fixture that made it."""

    def __init__(self, database_url: str, workers: int = 1, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "KEYMINT_DATABASE_URL": database_url,
                    "KEYMINT_RATELIMIT_ENABLED": "false", "AUTHLIB_INSECURE_TRANSPORT": "1",
                    **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full pipe
        # would block the server's logging (one JSON line per request).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers)],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy within 20 s")

    def stop(self, sig: int = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=5)


def start_server(registry: list[ServerProcess], database_url: str, workers: int = 1,
                 **env: str) -> ServerProcess:
    """Start a server and add it to `registry` (the `servers` fixture), which stops it."""
    server = ServerProcess(database_url, workers=workers, env=env)
    registry.append(server)
    return server.start()


def keymint_cli(database_url: str, *args: str, timeout: float = 60) -> str:
    """Run `keymint ARGS` as a separate process against `database_url`; returns stdout."""
    env = {**os.environ, "KEYMINT_DATABASE_URL": database_url,
           "KEYMINT_RATELIMIT_ENABLED": "false"}
    result = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env,
                            capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"keymint {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode()


def forge_chain_plain(session: Any, event_id: int, *, keep_mode_marker: bool = False,
                      **changes: Any) -> None:
    """What a database writer without the audit HMAC key can do: change an event, then
    recompute its hash, its seal and every later seal with the public algorithm (plain
    SHA-256), dropping the keyed-mode marker unless `keep_mode_marker`. Commits."""
    from sqlalchemy import select, update

    from app.models import AuditEvent, AuditSeal
    from app.services import audit_chain

    session.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(**changes))
    first = session.scalar(select(AuditEvent.seal_id).where(AuditEvent.id == event_id))
    previous = session.scalar(select(AuditSeal.hash).where(AuditSeal.id < first)
                              .order_by(AuditSeal.id.desc()).limit(1))
    prev_hash = previous or audit_chain.GENESIS_HASH
    columns = [getattr(AuditEvent, name) for name in
               ("id", "occurred_at", "workspace_id", "actor_type", "actor_id", "actor_key",
                "action", "target_type", "target_id", "ip", "user_agent", "request_id",
                "details")]
    for seal in session.scalars(select(AuditSeal).where(AuditSeal.id >= first)
                                .order_by(AuditSeal.id)).all():
        details = dict(seal.details or {})
        if not keep_mode_marker:
            details.pop("mac", None)
            details.pop("key_id", None)
        if seal.kind == "events":
            rows = session.execute(select(*columns).where(AuditEvent.seal_id == seal.id)
                                   .order_by(AuditEvent.id)).all()
            pairs = [(row.id, audit_chain.event_hash(row)) for row in rows]
            for row_id, hashed in pairs:
                session.execute(update(AuditEvent).where(AuditEvent.id == row_id)
                                .values(event_hash=hashed))
            details["events_digest"] = audit_chain.events_digest(pairs)
        seal.details = details
        seal.prev_hash = prev_hash
        seal.hash = audit_chain.seal_hash(seal)
        session.flush()
        prev_hash = seal.hash
    session.commit()


# --- JWT access tokens ----------------------------------------------------------------------

# KEYMINT_SIGNING_KEY_ENCRYPTION_KEY of the JWT tests: 32 bytes, URL-safe base64.
SIGNING_KEK = "a2V5bWludC10ZXN0LXNpZ25pbmcta2V5LWVuY3J5cHQ"


def jwt_config(url: str, **overrides: Any) -> dict[str, Any]:
    """base_config with a signing-key encryption key, so JWTs can be issued."""
    return base_config(url, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=SIGNING_KEK, **overrides)


def first_signing_key(app: Any, alg: str = "ES256") -> str:
    """`keymint signing-keys rotate --now`: a key that signs at once; its kid."""
    result = app.test_cli_runner().invoke(
        args=["signing-keys", "rotate", "--now", "--alg", alg, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["kid"]


def wsgi_layer(app: Any, kind: type) -> Any:
    """The middleware of type `kind` in `app`'s WSGI stack (a fast path, say)."""
    layer = app.wsgi_app
    while not isinstance(layer, kind):
        layer = getattr(layer, "wsgi_app", None) or layer.app
    return layer


def count_hand_overs(app: Any, kind: type) -> tuple[list[str], Callable[[], None]]:
    """(paths, undo): every request the `kind` fast path hands to Flask is appended to paths."""
    layer, calls = wsgi_layer(app, kind), []
    inner = layer.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ.get("PATH_INFO"))
        return inner(environ, start_response)

    layer.wsgi_app = counting

    def undo() -> None:
        layer.wsgi_app = inner

    return calls, undo

