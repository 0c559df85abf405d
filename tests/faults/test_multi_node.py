"""Two keymint processes on one database: a change through one binds the other at once."""

from __future__ import annotations

import json

import pytest
import requests

from tests.support import introspect, keymint_cli, mint, post, start_server, token_response

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def two_nodes(database_url, servers):
    return start_server(servers, database_url), start_server(servers, database_url)


def _me(node, token: str) -> int:
    return requests.get(node.url + "/api/v1/me", timeout=10,
                        headers={"Authorization": f"Bearer {token}"}).status_code


def test_token_revoked_on_one_node_is_dead_on_the_other(two_nodes, factory):
    a, b = two_nodes
    key = factory.key(scopes="introspect keys:read")
    token = mint(a, key.auth)
    assert introspect(b, key.auth, token)["active"] is True
    assert _me(b, token) == 200

    assert post(a, "/oauth/revoke", {"token": token}, key.auth).status_code == 200

    assert introspect(b, key.auth, token) == {"active": False}  # b's very next request
    assert _me(b, token) == 401


def test_key_revoked_elsewhere_is_refused_by_every_node(two_nodes, factory, database_url):
    a, b = two_nodes
    key = factory.key(scopes="introspect keys:read")
    watcher = factory.key(key.workspace, scopes="introspect")
    tokens = [mint(a, key.auth), mint(b, key.auth)]
    for node in (a, b):  # both nodes have served this key (warm pools, no caches to trust)
        assert introspect(node, key.auth, tokens[0])["active"] is True

    keymint_cli(database_url, "keys", "revoke", key.client_id)  # a third process

    for node in (a, b):
        refused = token_response(node, key)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        for token in tokens:
            assert introspect(node, watcher.auth, token) == {"active": False}
            assert _me(node, token) == 401


def test_secret_rotated_elsewhere_is_refused_by_every_node(two_nodes, factory, database_url):
    a, b = two_nodes
    key = factory.key(scopes="introspect")
    for node in (a, b):
        mint(node, key.auth)

    out = keymint_cli(database_url, "keys", "rotate", key.client_id, "--grace-period", "0",
                      "--json")
    new_auth = (key.client_id, json.loads(out)["client_secret"])
    for node in (a, b):
        assert token_response(node, key).status_code == 401
        assert introspect(node, new_auth, mint(node, new_auth))["active"] is True


def test_token_rotated_on_one_node_is_reuse_on_the_other(two_nodes, factory):
    a, b = two_nodes
    key = factory.key(scopes="introspect")
    token = mint(a, key.auth)
    rotated = post(a, "/oauth/rotate", {"token": token}, key.auth)
    assert rotated.status_code == 200
    successor = rotated.json()["access_token"]

    reuse = post(b, "/oauth/rotate", {"token": token}, key.auth)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert introspect(a, key.auth, successor) == {"active": False}  # lineage revoked
