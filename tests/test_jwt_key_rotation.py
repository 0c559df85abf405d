"""A signing-key rotation seen by a resource server that caches the JWKS as told: no token it
is handed ever names a key its cached JWKS lacks, at the exact boundaries of the schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet

from tests.support import first_signing_key, introspect, jwt_config, mint

T0 = datetime(2030, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)  # `signing-keys rotate`
LEAD = timedelta(seconds=300)  # the JWKS max-age: the new key signs from T1 + LEAD
TTL = timedelta(seconds=300)  # KEYMINT_JWT_ACCESS_TOKEN_TTL
TICK = timedelta(microseconds=1)


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)


class ResourceServer:
    """Validates locally with a JWKS it fetched once and keeps for the response's max-age."""

    def __init__(self, client, fetched_at: datetime) -> None:
        with freeze_time(fetched_at):
            response = client.get("/.well-known/jwks.json")
        max_age = int(response.headers["Cache-Control"].split("max-age=")[1])
        self.fresh_until = fetched_at + timedelta(seconds=max_age)  # fresh while age < max-age
        self.keys = KeySet.import_key_set(response.get_json())

    def accepts(self, token: str, now: datetime) -> bool:
        assert now < self.fresh_until, "this copy is stale: a resource server refetches"
        try:
            claims = jwt.decode(token, self.keys, algorithms=["ES256", "EdDSA"]).claims
        except InvalidKeyIdError:  # no key with this kid: refetch (the library's job)
            return False
        jwt.JWTClaimsRegistry(now=int(now.timestamp())).validate(claims)
        return True


def _kid(token: str) -> str:
    from joserfc import jws

    return jws.extract_compact(token.encode()).headers()["kid"]


def _rotate(app) -> str:
    result = app.test_cli_runner().invoke(args=["signing-keys", "rotate", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["kid"]


@pytest.fixture
def world(app, client, factory):
    with freeze_time(T0):
        old = first_signing_key(app)
        owner = factory.user()
        slug = factory.workspace(owner=owner, token_format="jwt", max_key_lifetime_days=None)
        key = factory.key(slug, owner, scopes="introspect")
    with freeze_time(T1):
        new = _rotate(app)
    return old, new, key


def test_the_old_key_signs_until_the_new_one_has_been_published_one_cache_lifetime(
        app, client, world):
    old, new, key = world
    with freeze_time(T1 + LEAD - TICK):
        last_old = mint(client, key)
    with freeze_time(T1 + LEAD):
        first_new = mint(client, key)
    assert (_kid(last_old), _kid(first_new)) == (old, new)
    # The stalest copy still fresh when the new key starts signing was fetched just after
    # the rotation: it lists the new key. A copy fetched just before has gone stale by then.
    stalest = ResourceServer(client, T1 + TICK)
    assert stalest.accepts(first_new, T1 + LEAD)
    before = ResourceServer(client, T1 - TICK)
    assert before.fresh_until < T1 + LEAD
    assert before.accepts(last_old, T1 + LEAD - 2 * TICK)


def test_the_old_key_stays_published_until_its_last_token_expires(app, client, world):
    _, new, key = world
    with freeze_time(T1 + LEAD - TICK):
        last_old = mint(client, key)
    retired_at = T1 + LEAD
    late = ResourceServer(client, retired_at + TTL - TICK)  # the last JWKS that lists it
    # `exp` is whole seconds, rounded down: the token's last accepted second starts at -1 s.
    assert late.accepts(last_old, retired_at + TTL - timedelta(seconds=1) - TICK)
    with freeze_time(retired_at + TTL):
        kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
        assert kids == [new]
        assert introspect(client, key, last_old) == {"active": False}  # expired too


def test_a_token_never_outlives_the_publication_of_its_key(app, client, world):
    """Raising KEYMINT_JWT_ACCESS_TOKEN_TTL after the rotation was scheduled does not make
    the old key's last tokens outlive the instant it leaves the JWKS."""
    old, _, key = world
    app.config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] = 3600
    app.config["KEYMINT_ACCESS_TOKEN_TTL"] = 3600
    with freeze_time(T1 + LEAD - timedelta(seconds=10)):
        token = mint(client, key)
        answer = introspect(client, key, token)
    assert _kid(token) == old
    assert answer["exp"] == int((T1 + LEAD + TTL).timestamp())


def test_rotate_now_signs_at_once_and_a_resource_server_refetches_on_the_unknown_kid(
        app, client, world):
    old, _, key = world
    cached = ResourceServer(client, T1 + LEAD)
    with freeze_time(T1 + LEAD + timedelta(seconds=5)):
        result = app.test_cli_runner().invoke(args=["signing-keys", "rotate", "--now", "--json"])
        emergency = json.loads(result.output)["kid"]
        token = mint(client, key)
    assert _kid(token) == emergency
    assert not cached.accepts(token, T1 + LEAD + timedelta(seconds=6))
    refetched = ResourceServer(client, T1 + LEAD + timedelta(seconds=6))
    assert refetched.accepts(token, T1 + LEAD + timedelta(seconds=6))
    # Nothing that signed in the last TTL leaves the JWKS: the keys retired at once stay.
    assert {old, emergency} <= {k.kid for k in refetched.keys.keys}
