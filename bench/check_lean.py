"""Check that bench/lean_app.py answers what keymint's introspection answers, state by state.

The lean floor is only a fair yardstick if it decides what keymint decides. This builds a
keymint database, puts tokens and callers in each state keymint's introspection tells apart
(live, revoked, expired; the token's key, secret, owner or membership gone; scopes no longer
held; another workspace; bad callers), and asks both apps (Flask test clients, no server)
the same question; every answer must be the same status and the same JSON::

    .venv/bin/python bench/check_lean.py                      # a temporary SQLite file
    .venv/bin/python bench/check_lean.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/keymint_lean_check

A PostgreSQL database is created for the check and dropped afterwards. Exit status 1 if any
answer differs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (HERE, REPO):
    if p not in sys.path:
        sys.path.insert(0, p)


def _admin(url: str, action: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


def run(url: str) -> int:
    from sqlalchemy import delete, update

    from app import create_app, credentials
    from app.extensions import db
    from app.models import AccessToken, ApiKey, KeySecret, Membership, User
    from tests.support import GRANT, Factory, base_config, dispose, migrate

    migrate(url)
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    kapp = create_app(base_config(url))
    os.environ["KEYMINT_DATABASE_URL"] = url
    os.environ.pop("KEYMINT_ISSUER", None)
    lean_app = importlib.import_module("lean_app")
    km, lean = kapp.test_client(), lean_app.app.test_client()
    f = Factory(kapp)
    owner = f.user()
    ws = f.workspace(owner=owner)
    caller = f.key(ws, owner, scopes="introspect keys:read")
    elsewhere = f.key(scopes="keys:read")  # a key in a workspace of its own
    past = datetime.now(UTC) - timedelta(seconds=1)

    def change(*statements) -> None:
        with kapp.app_context():
            for statement in statements:
                db.session.execute(statement)
            db.session.commit()

    def key_id(client_id: str) -> int:
        with kapp.app_context():
            return db.session.query(ApiKey.id).filter_by(client_id=client_id).scalar()

    def user_of(email: str) -> int:
        with kapp.app_context():
            return db.session.query(User.id).filter_by(email=email).scalar()

    def mint(handle) -> str:
        r = km.post("/oauth/token", data=GRANT, auth=handle.auth)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.json["access_token"]

    failures = 0

    def same(case: str, auth, data, expect_status: int, expect_active: bool | None = None) -> None:
        nonlocal failures
        headers = {}
        if auth == "none":
            kw = {}
        elif isinstance(auth, str):
            kw, headers = {}, {"Authorization": auth}
        else:
            kw = {"auth": auth}
        a = km.post("/oauth/introspect", data=data, headers=headers, **kw)
        b = lean.post("/oauth/introspect", data=data, headers=headers, **kw)
        ok = (a.status_code == b.status_code == expect_status and a.json == b.json
              and (expect_active is None or a.json.get("active") is expect_active))
        failures += not ok
        print(f"{'ok  ' if ok else 'DIFF'} {case}: keymint {a.status_code} "
              f"{a.get_data(as_text=True)[:90]}"
              + ("" if ok else f"\n     lean {b.status_code} {b.get_data(as_text=True)[:200]}"
                 f"\n     keymint {a.get_data(as_text=True)[:200]}"))

    def member_token(**key_kwargs):
        """A new member of the caller's workspace with a key and a live token of it."""
        handle = f.key(ws, scopes=key_kwargs.pop("scopes", "keys:read"), **key_kwargs)
        return handle, mint(handle)

    # live tokens
    same("the caller's own token", caller.auth, {"token": mint(caller)}, 200, True)
    handle, token = member_token()
    same("another member's token, same workspace", caller.auth, {"token": token}, 200, True)
    same("the same with a token_type_hint", caller.auth,
         {"token": token, "token_type_hint": "access_token"}, 200, True)
    # tokens that are not active for this caller
    same("a token of another workspace", caller.auth, {"token": mint(elsewhere)}, 200, False)
    handle, token = member_token()
    assert km.post("/oauth/revoke", data={"token": token}, auth=handle.auth).status_code == 200
    same("a revoked token", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(AccessToken).where(AccessToken.digest == credentials.digest(token))
           .values(expires_at=past))
    same("an expired token", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(ApiKey).where(ApiKey.client_id == handle.client_id).values(revoked_at=past))
    same("its key revoked", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(ApiKey).where(ApiKey.client_id == handle.client_id).values(expires_at=past))
    same("its key expired", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(KeySecret).where(KeySecret.key_id == key_id(handle.client_id))
           .values(revoked_at=past))
    same("the secret that minted it revoked", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(KeySecret).where(KeySecret.key_id == key_id(handle.client_id))
           .values(expires_at=past))
    same("the secret that minted it expired", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(update(User).where(User.email == handle.email).values(status="disabled"))
    same("its owner disabled", caller.auth, {"token": token}, 200, False)
    handle, token = member_token()
    change(delete(Membership).where(Membership.user_id == user_of(handle.email)))
    same("its owner no longer a member", caller.auth, {"token": token}, 200, False)
    handle, token = member_token(scopes="keys:read keys:write")
    change(update(ApiKey).where(ApiKey.client_id == handle.client_id).values(scopes="keys:write"))
    same("a scope its key no longer holds", caller.auth, {"token": token}, 200, False)
    good = mint(caller)
    same("a bad-checksum at_ value", caller.auth, {"token": good[:-6] + "AAAAAA"}, 200, False)
    same("a well-formed unknown token", caller.auth,
         {"token": credentials.new_access_token()}, 200, False)
    # bad requests and bad callers
    same("no token parameter", caller.auth, {"token_type_hint": "access_token"}, 400)
    same("a wrong secret", (caller.client_id, credentials.new_secret()), {"token": good}, 401)
    same("an unknown client", (credentials.new_client_id(), caller.secret), {"token": good}, 401)
    same("no Authorization header", "none", {"token": good}, 401)
    same("a Basic header that is not base64", "Basic !!!", {"token": good}, 401)
    handle, token = member_token()
    same("a caller without the introspect scope", handle.auth, {"token": good}, 403)
    for what, statement in (
        ("revoked", lambda h: update(ApiKey).where(ApiKey.client_id == h.client_id)
         .values(revoked_at=past)),
        ("expired", lambda h: update(ApiKey).where(ApiKey.client_id == h.client_id)
         .values(expires_at=past)),
        ("with an expired secret", lambda h: update(KeySecret)
         .where(KeySecret.key_id == key_id(h.client_id)).values(expires_at=past)),
        ("whose owner is disabled", lambda h: update(User).where(User.email == h.email)
         .values(status="disabled")),
        ("whose owner left", lambda h: delete(Membership)
         .where(Membership.user_id == user_of(h.email))),
    ):
        handle = f.key(ws, scopes="introspect")
        change(statement(handle))
        same(f"a caller key {what}", handle.auth, {"token": good}, 401)
    dispose(kapp)
    print(f"{failures} difference(s)")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", help="PostgreSQL URL (created and dropped); default: a "
                    "temporary SQLite file")
    args = ap.parse_args()
    url = args.database_url
    if url is None:
        url = "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="keymint-lean-"), "check.sqlite3")
        return run(url)
    _admin(url, "create")
    try:
        return run(url)
    finally:
        _admin(url, "drop")


if __name__ == "__main__":
    raise SystemExit(main())
