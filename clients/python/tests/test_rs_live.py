"""The opaque-token path against a real `keymint serve` process (SQLite): introspection, the
cache's bounds (max_stale, the token's exp, inactive answers) and failing closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock
from keymint_resource import InsufficientScope, InvalidToken, TokenVerifier, VerifierUnavailable

from tests.support import (
    Factory,
    ServerProcess,
    base_config,
    dispose,
    migrate,
    mint,
    post,
    user_id,
)

pytestmark = pytest.mark.slow


class Live:
    """One keymint server on a migrated SQLite database, and a Factory writing to it."""

    def __init__(self, server: ServerProcess, factory: Factory) -> None:
        self.server = server
        self.factory = factory
        self.slug = factory.workspace()
        # The resource server's own key: it may introspect, nothing else.
        self.rs_key = factory.key(self.slug, scopes="introspect")

    def verifier(self, clock: Clock, **options: Any) -> TokenVerifier:
        return TokenVerifier(self.server.url, *self.rs_key.auth, clock=clock, **options)

    def client_key(self, scopes: str = "orders:read orders:write") -> Any:
        return self.factory.key(self.slug, scopes=scopes)

    def revoke(self, key: Any, token: str) -> None:
        assert post(self.server, "/oauth/revoke", {"token": token}, key).status_code == 200


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from app import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('rs') / 'keymint.sqlite3'}"
    migrate(url)
    app = create_app(base_config(url))
    server = ServerProcess(url).start()
    try:
        yield Live(server, Factory(app))
    finally:
        server.stop()
        dispose(app)


@pytest.fixture
def now_clock() -> Clock:
    # keymint judges tokens by its real clock; the verifier's starts at the same instant and
    # only the tests move it.
    return Clock(time.time())


def test_active_token_is_the_decision_object(live, now_clock):
    key = live.client_key()
    token = mint(live.server, key, scope="orders:read")
    access = live.verifier(now_clock).verify(token)
    assert access.format == "opaque"
    assert access.subject == user_id(live.factory.app, key.email)
    assert access.client_id == key.client_id
    assert access.workspace_id is not None
    assert access.scopes == frozenset({"orders:read"})
    assert access.issuer == live.server.url
    assert access.token_id.startswith("tok_")
    assert access.expires_at > now_clock.now


def test_revocation_is_seen_exactly_when_max_stale_runs_out(live, now_clock):
    key = live.client_key()
    token = mint(live.server, key)
    check = live.verifier(now_clock, max_stale=5)
    check.verify(token)
    live.revoke(key, token)

    now_clock.advance(4.999)  # the documented staleness: still the cached answer
    assert check.verify(token).client_id == key.client_id
    assert check.introspections == 1
    now_clock.advance(0.001)  # never a moment longer
    with pytest.raises(InvalidToken, match="not active"):
        check.verify(token)
    assert check.introspections == 2


def test_cache_off_sees_revocation_at_once(live, now_clock):
    key = live.client_key()
    token = mint(live.server, key)
    check = live.verifier(now_clock, cache=False)
    check.verify(token)
    live.revoke(key, token)
    with pytest.raises(InvalidToken):
        check.verify(token)
    assert check.introspections == 2


def test_cached_answer_never_outlives_the_tokens_exp(live, now_clock):
    token = mint(live.server, live.client_key())
    check = live.verifier(now_clock, max_stale=60)
    exp = check.verify(token).expires_at
    assert exp is not None
    assert exp - now_clock.now > 60  # keymint's TTL is far longer than max_stale here
    now_clock.now = exp - 2  # past the first entry's end (first answer + 60 s): asked again
    check.verify(token)
    assert check.introspections == 2
    now_clock.now = exp - 0.001
    check.verify(token)
    assert check.introspections == 2  # cached until exp ...
    now_clock.now = exp
    with pytest.raises(InvalidToken):
        check.verify(token)  # ... and not at exp, whatever keymint's clock still says
    assert check.introspections == 3


def test_inactive_answers_are_cached_briefly(live, now_clock):
    check = live.verifier(now_clock, inactive_ttl=2)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            check.verify("at_not_a_real_token_0000000000")
    assert check.introspections == 1
    now_clock.advance(2)
    with pytest.raises(InvalidToken):
        check.verify("at_not_a_real_token_0000000000")
    assert check.introspections == 2


def test_token_of_another_workspace_is_invalid(live, now_clock):
    foreign = live.factory.key(scopes="orders:read")  # its own new workspace
    with pytest.raises(InvalidToken, match="not active"):
        live.verifier(now_clock).verify(mint(live.server, foreign))


def test_check_names_the_missing_scope(live, now_clock):
    token = mint(live.server, live.client_key(), scope="orders:read")
    check = live.verifier(now_clock)
    assert check.check(token, "GET", "/v1/orders/1", ["orders:read"]).subject
    with pytest.raises(InsufficientScope) as refused:
        check.check(token, "POST", "/v1/orders", ["orders:write"])
    assert refused.value.scopes == ("orders:write",)


def test_resource_server_key_without_introspect_scope_fails_closed(live, now_clock, caplog):
    weak = live.factory.key(live.slug, scopes="orders:read")
    check = TokenVerifier(live.server.url, *weak.auth, clock=now_clock)
    with caplog.at_level(logging.ERROR, logger="keymint_resource"), \
            pytest.raises(VerifierUnavailable):
        check.verify(mint(live.server, live.client_key()))
    assert "HTTP 403" in caplog.text and weak.secret not in caplog.text


def test_wrong_secret_fails_closed_and_is_not_logged(live, now_clock, caplog):
    secret = "sk_" + "x" * 40
    check = TokenVerifier(live.server.url, live.rs_key.client_id, secret, clock=now_clock)
    with caplog.at_level(logging.DEBUG, logger="keymint_resource"), \
            pytest.raises(VerifierUnavailable):
        check.verify(mint(live.server, live.client_key()))
    assert "HTTP 401" in caplog.text and secret not in caplog.text


def test_installed_without_the_server(tmp_path: Path):
    """The library imports nothing of keymint's server (Flask is an optional extra)."""
    import subprocess
    import sys

    package = Path(__file__).resolve().parent.parent
    code = ("import sys, keymint_resource, keymint_resource.wsgi, keymint_resource.asgi; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('app', 'flask', 'flask_sqlalchemy', 'sqlalchemy', 'psycopg', 'granian')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            env={"PYTHONPATH": str(package)}, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- JWT access tokens from a real keymint (once keymint issues them) -------------------------


@pytest.fixture(scope="module")
def jwt_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A keymint whose workspace issues JWTs, with a signing key made by the operator's CLI;
    skipped where this keymint has no JWT support yet."""
    import base64
    import os
    import secrets

    from app import create_app
    from app.models import Workspace
    from tests.support import keymint_cli

    if not hasattr(Workspace, "token_format"):
        pytest.skip("this keymint has no JWT access tokens (workspace token_format)")
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    url = f"sqlite:///{tmp_path_factory.mktemp('rs-jwt') / 'keymint.sqlite3'}"
    migrate(url)
    saved = os.environ.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY")
    os.environ["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = kek
    try:
        keymint_cli(url, "signing-keys", "rotate", "--now")
    finally:
        if saved is None:
            os.environ.pop("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY")
        else:
            os.environ["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = saved
    app = create_app(base_config(url, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=kek))
    server = ServerProcess(url, env={"KEYMINT_SIGNING_KEY_ENCRYPTION_KEY": kek}).start()
    try:
        factory = Factory(app)
        live = Live(server, factory)
        with app.app_context():
            from app.extensions import db
            from app.services import accounts

            accounts.get_workspace(db.session, live.slug).token_format = "jwt"
            db.session.commit()
        yield live
    finally:
        server.stop()
        dispose(app)


def _jwt(live: Live, key: Any, scope: str | None = None) -> str:
    token = mint(live.server, key, scope=scope)
    if token.count(".") != 2:
        pytest.skip("this keymint does not issue JWT access tokens yet")
    return token


def test_keymint_jwt_is_validated_locally_without_introspection(jwt_live, now_clock):
    key = jwt_live.client_key()
    token = _jwt(jwt_live, key, scope="orders:read")
    check = jwt_live.verifier(now_clock)
    access = check.verify(token)
    assert access.format == "jwt"
    assert access.subject == user_id(jwt_live.factory.app, key.email)
    assert access.client_id == key.client_id
    assert access.scopes == frozenset({"orders:read"})
    assert access.token_id.startswith("tok_")
    assert access.audience == (jwt_live.server.url + "/api/v1",)
    assert check.introspections == 0
    # the same token introspected gives the same decision
    opaque_view = jwt_live.verifier(now_clock, verify_jwt_locally=False).verify(token)
    assert (opaque_view.subject, opaque_view.client_id, opaque_view.token_id,
            opaque_view.workspace_id) == (access.subject, access.client_id, access.token_id,
                                          access.workspace_id)


def test_revoked_jwt_stays_valid_locally_until_exp_but_not_by_introspection(jwt_live,
                                                                            now_clock):
    key = jwt_live.client_key()
    token = _jwt(jwt_live, key)
    jwt_live.revoke(key, token)
    assert jwt_live.verifier(now_clock).verify(token).client_id == key.client_id  # trade-off
    with pytest.raises(InvalidToken):
        jwt_live.verifier(now_clock, verify_jwt_locally=False).verify(token)
