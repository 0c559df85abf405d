"""The CLI: stable --json output, secrets only at create/rotate, clear errors and exit codes."""

import json

import pytest

from tests.support import all_rows, token_response

KEY_FIELDS = {"client_id", "name", "workspace", "owner", "scopes", "state", "created_at",
              "expires_at", "revoked_at", "last_used_at", "last_used_ip", "secret_hint",
              "rate_limit", "resources", "introspects_for"}



@pytest.fixture
def seeded(cli):
    assert cli("users", "create", "ann@example.com").exit_code == 0
    assert cli("workspaces", "create", "acme", "--owner", "ann@example.com").exit_code == 0
    return "acme", "ann@example.com"


def test_keys_create_json_shape_and_secret_shown_once(cli, seeded, app):
    result = cli("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
                 "--name", "ci", "--scope", "read write", "--expires-in-days", "30", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == KEY_FIELDS | {"client_secret"}
    assert created["scopes"] == ["read", "write"]
    assert created["owner"] == {"id": created["owner"]["id"], "email": "ann@example.com",
                                "status": "active"}
    assert created["expires_at"].endswith("Z")
    assert created["secret_hint"] == created["client_secret"][:8]

    listed = json.loads(cli("keys", "list", "--json").output)["keys"]
    assert [set(k) for k in listed] == [KEY_FIELDS]
    assert created["client_secret"] not in cli("keys", "list", "--json").output

    rotated = json.loads(cli("keys", "rotate", created["client_id"], "--grace-period", "60",
                             "--json").output)
    assert set(rotated) == KEY_FIELDS | {"client_secret", "previous_secret_expires_at"}
    assert rotated["client_secret"] != created["client_secret"]

    revoked = json.loads(cli("keys", "revoke", created["client_id"], "--json").output)
    assert revoked["state"] == "revoked" and "client_secret" not in revoked
    assert created["client_secret"] not in repr(all_rows(app, "key_secrets"))


@pytest.mark.parametrize("args, message", [
    (("users", "create", "not-an-email"), "not a valid email"),
    (("users", "create", "ann@example.com"), "already exists"),
    (("workspaces", "create", "acme", "--owner", "ann@example.com"), "already exists"),
    (("workspaces", "create", "new", "--owner", "ghost@example.com"), "no user"),
    (("members", "add", "ghost", "ann@example.com"), "no workspace"),
    (("members", "add", "acme", "ann@example.com", "--role", "god"), "invalid role"),
    (("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
      "--expires-at", "2001-01-01T00:00:00Z"), "must be in the future"),
    (("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
      "--expires-at", "2030-01-01T00:00:00"), "no timezone"),
    (("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
      "--scope", 'bad"scope'), "invalid scope"),
    (("keys", "revoke", "key_doesnotexist"), "no key"),
    (("keys", "rotate", "key_doesnotexist"), "no key"),
])
def test_bad_input_is_a_clear_one_line_error(cli, seeded, app, args, message):
    before = {t: len(all_rows(app, t)) for t in ("users", "workspaces", "api_keys")}
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert {t: len(all_rows(app, t)) for t in before} == before


def test_members_add_and_remove_revokes_keys(cli, seeded, app):
    assert cli("users", "create", "bob@example.com").exit_code == 0
    assert cli("members", "add", "acme", "bob@example.com", "--role", "member").exit_code == 0
    made = json.loads(cli("keys", "create", "--workspace", "acme", "--user", "bob@example.com",
                          "--json").output)
    result = cli("members", "remove", "acme", "bob@example.com")
    assert result.exit_code == 0 and "1 key(s) revoked" in result.output
    state = json.loads(cli("keys", "list", "--user", "bob@example.com", "--json").output)
    assert [k["state"] for k in state["keys"]] == ["revoked"]
    assert made["client_id"] == state["keys"][0]["client_id"]


def test_users_disable_stops_token_issuance(cli, seeded, client):
    made = json.loads(cli("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
                          "--json").output)
    auth = (made["client_id"], made["client_secret"])
    assert token_response(client, auth).status_code == 200
    assert cli("users", "disable", "ann@example.com").exit_code == 0
    assert token_response(client, auth).status_code == 401
    listed = json.loads(cli("keys", "list", "--json").output)["keys"]
    assert [k["owner"]["status"] for k in listed] == ["disabled"]


def test_keys_expiring_lists_only_keys_within_the_window(cli, seeded):
    soon = json.loads(cli("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
                          "--expires-in-days", "3", "--json").output)
    cli("keys", "create", "--workspace", "acme", "--user", "ann@example.com",
        "--expires-in-days", "60", "--json")
    cli("keys", "create", "--workspace", "acme", "--user", "ann@example.com", "--json")
    listed = json.loads(cli("keys", "expiring", "--within-days", "7", "--json").output)["keys"]
    assert [k["client_id"] for k in listed] == [soon["client_id"]]


def test_demo_prints_a_working_credential(cli, client, backend, app):
    force = ("--force",) if backend == "postgres" else ()
    if backend == "postgres":  # not a local SQLite trial: refused unless forced
        refused = cli("demo")
        assert refused.exit_code == 1 and "pass --force" in refused.output
        assert all_rows(app, "users") == []
    result = cli("demo", "--port", "8123", *force)
    assert result.exit_code == 0, result.output
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in result.output.splitlines() if line.strip().startswith("client_")}
    assert token_response(client, (lines["client_id"], lines["client_secret"])).status_code == 200
    # The secret is printed once; the examples read it from the environment.
    assert result.output.count(lines["client_secret"]) == 1
    assert 'curl -s -u "$KEYMINT_CLIENT_ID:$KEYMINT_CLIENT_SECRET"' in result.output
    assert "127.0.0.1:8123/oauth/token" in result.output
    assert ("keymint console login-link demo@example.com --base-url http://127.0.0.1:8123"
            in result.output)
    # idempotent: a second run reuses the user and workspace and adds a key
    assert cli("demo", *force).exit_code == 0
