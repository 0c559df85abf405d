"""Day-2 verbs without SQL: users list/enable, workspaces list/show, members list/set-role/
transfer-ownership, keys show; every list has --json; the rules are the services'."""

from __future__ import annotations

import json

import pytest

from tests.support import all_rows, audit_events, introspect, mint, token_response


@pytest.fixture
def acme(factory):
    """acme: ann owns it, bob is an admin, cat a member with a key; dan is in no workspace."""
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    factory.member("acme", factory.user("bob@example.com"), role="admin")
    key = factory.key("acme", factory.member("acme", factory.user("cat@example.com")),
                      scopes="introspect")
    factory.user("dan@example.com")
    return key


def test_users_list_text_and_json(cli, acme):
    assert cli("users", "disable", "dan@example.com").exit_code == 0
    result = cli("users", "list", "--json")
    assert result.exit_code == 0, result.output
    users = json.loads(result.output)["users"]
    assert [u["email"] for u in users] == ["ann@example.com", "bob@example.com",
                                            "cat@example.com", "dan@example.com"]
    ann, _, _, dan = users
    assert set(ann) == {"id", "email", "status", "created_at", "disabled_at", "workspaces"}
    assert ann["workspaces"] == [{"slug": "acme", "role": "owner"}]
    assert (dan["status"], dan["workspaces"]) == ("disabled", [])
    assert dan["disabled_at"].endswith("Z")

    disabled = json.loads(cli("users", "list", "--status", "disabled", "--json").output)
    assert [u["email"] for u in disabled["users"]] == ["dan@example.com"]
    text = cli("users", "list").output.splitlines()
    assert text[0].split() == ["ann@example.com", "active", "acme(owner)"]
    assert text[3].split() == ["dan@example.com", "disabled", "-"]


def test_users_enable_undoes_disable_audited_and_the_key_works_again(cli, acme, client, app):
    token = mint(client, acme)
    assert cli("users", "disable", "cat@example.com").exit_code == 0
    assert token_response(client, acme).status_code == 401

    result = cli("users", "enable", "cat@example.com")
    assert result.exit_code == 0, result.output
    assert "enabled cat@example.com" in result.output
    assert token_response(client, acme).status_code == 200
    assert introspect(client, acme, token)["active"] is True  # as documented: unexpired tokens
    (event,) = audit_events(app, "user.enabled")
    assert (event.actor_type, event.actor_id, event.target_type) == ("system", "cli", "user")
    assert event.workspace_id is not None

    again = cli("users", "enable", "cat@example.com")
    assert again.exit_code == 0 and "already active; nothing changed" in again.output
    assert len(audit_events(app, "user.enabled")) == 1
    missing = cli("users", "enable", "ghost@example.com")
    assert missing.exit_code == 1 and "no user with email ghost@example.com" in missing.output


def test_workspaces_list_and_show(cli, acme, factory):
    factory.workspace(owner="dan@example.com", slug="beta")
    assert cli("keys", "revoke", acme.client_id).exit_code == 0
    factory.key("acme", "bob@example.com")

    listed = json.loads(cli("workspaces", "list", "--json").output)["workspaces"]
    assert [(w["slug"], w["owners"], w["members"], w["active_keys"]) for w in listed] == [
        ("acme", ["ann@example.com"], 3, 1), ("beta", ["dan@example.com"], 1, 0)]

    shown = cli("workspaces", "show", "acme", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["slug"] == "acme" and data["owners"] == ["ann@example.com"]
    assert {"max_key_lifetime_days", "effective_token_ttl_seconds", "members",
            "active_keys"} <= set(data)
    text = cli("workspaces", "show", "acme").output
    assert "owners" in text and "ann@example.com" in text
    missing = cli("workspaces", "show", "nope")
    assert missing.exit_code == 1 and "no workspace 'nope'" in missing.output


def test_members_list(cli, acme):
    result = cli("members", "list", "acme", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["workspace"] == "acme"
    assert [(m["email"], m["role"], m["status"]) for m in data["members"]] == [
        ("ann@example.com", "owner", "active"), ("bob@example.com", "admin", "active"),
        ("cat@example.com", "member", "active")]
    assert set(data["members"][0]) == {"user_id", "email", "role", "status", "joined_at"}
    assert cli("members", "list", "acme").output.splitlines()[1].split()[:3] == [
        "bob@example.com", "admin", "active"]


def test_members_set_role_keeps_the_last_owner(cli, acme, app):
    result = cli("members", "set-role", "acme", "cat@example.com", "admin")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "cat@example.com in acme: member -> admin"
    (event,) = audit_events(app, "member.role_changed")
    assert event.details == {"from": "member", "to": "admin"}

    last = cli("members", "set-role", "acme", "ann@example.com", "member")
    assert last.exit_code == 1
    assert "the last owner of a workspace cannot be demoted" in last.output
    bad = cli("members", "set-role", "acme", "cat@example.com", "god")
    assert bad.exit_code == 2 and "'god' is not one of" in bad.output
    stranger = cli("members", "set-role", "acme", "dan@example.com", "admin")
    assert stranger.exit_code == 1 and "dan@example.com is not a member of acme" in \
        stranger.output
    assert len(audit_events(app, "member.role_changed")) == 1


def test_transfer_ownership(cli, acme, app):
    roles = lambda: {m["email"]: m["role"] for m in json.loads(  # noqa: E731
        cli("members", "list", "acme", "--json").output)["members"]}
    refused = [
        (("--from", "bob@example.com", "--to", "cat@example.com"),
         "bob@example.com is not an owner of acme"),
        (("--from", "ann@example.com", "--to", "dan@example.com"),
         "dan@example.com is not a member of acme; add them first"),
        (("--from", "ann@example.com", "--to", "ann@example.com"),
         "the current and the new owner are the same user")]
    for args, message in refused:
        result = cli("members", "transfer-ownership", "acme", *args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert roles()["ann@example.com"] == "owner"
    assert audit_events(app, "member.role_changed") == []

    result = cli("members", "transfer-ownership", "acme", "--from", "ann@example.com",
                 "--to", "cat@example.com")
    assert result.exit_code == 0, result.output
    assert roles() == {"ann@example.com": "admin", "bob@example.com": "admin",
                       "cat@example.com": "owner"}
    assert [e.details for e in audit_events(app, "member.role_changed")] == [
        {"from": "member", "to": "owner"}, {"from": "owner", "to": "admin"}]

    both = cli("members", "transfer-ownership", "acme", "--from", "cat@example.com",
               "--to", "bob@example.com", "--keep-as", "owner")
    assert both.exit_code == 0, both.output
    assert roles()["cat@example.com"] == roles()["bob@example.com"] == "owner"


def test_keys_show(cli, acme):
    result = cli("keys", "show", acme.client_id, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["client_id"] == acme.client_id and data["owner"]["email"] == "cat@example.com"
    assert data["scopes"] == ["introspect"] and data["state"] == "active"
    text = cli("keys", "show", acme.client_id).output
    assert acme.secret not in text + result.output
    assert any(line.split() == ["owner", "cat@example.com"] for line in text.splitlines())
    missing = cli("keys", "show", "key_doesnotexist")
    assert missing.exit_code == 1 and "no key" in missing.output


@pytest.mark.parametrize(("args", "message"), [
    (("keys", "create", "--workspace", "acme", "--user", "cat@example.com",
      "--expires-at", "2099-01-01T00:00:00Z", "--expires-in-days", "3"),
     "give --expires-at or --expires-in-days, not both"),
    (("keys", "create", "--workspace", "acme", "--user", "cat@example.com",
      "--rate-limit", "lots"), "--rate-limit"),
    (("keys", "create", "--workspace", "acme", "--user", "cat@example.com", "--name", ""),
     "--name must not be empty"),
])
def test_errors_name_the_cli_flag(cli, acme, app, args, message):
    before = len(all_rows(app, "api_keys"))
    result = cli(*args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert "expires_at" not in result.output and "rate_limit" not in result.output
    assert len(all_rows(app, "api_keys")) == before


def test_grace_period_error_names_the_flag(cli, acme):
    result = cli("keys", "rotate", acme.client_id, "--grace-period", "99999999")
    assert result.exit_code == 1
    assert "--grace-period must be between 0 and" in result.output


def test_legacy_report_states_staleness_and_flush_wait_waits_one_interval(
        app_factory, database_url, monkeypatch):
    import time

    app, factory = app_factory(database_url, KEYMINT_LEGACY_FLUSH_INTERVAL=7)
    factory.workspace(slug="acme")
    runner = app.test_cli_runner()
    plain = runner.invoke(args=["legacy", "report"])
    assert plain.exit_code == 0, plain.output
    assert "may be up to 7 s behind" in plain.stderr
    assert json.loads(runner.invoke(args=["legacy", "report", "--json"]).stdout)[
        "stale_up_to_seconds"] == 7

    waited: list[float] = []
    monkeypatch.setattr(time, "sleep", waited.append)
    result = runner.invoke(args=["legacy", "report", "--flush-wait", "--json"])
    assert result.exit_code == 0, result.output
    assert waited == [8]  # one flush interval and a second: every process has flushed since
    assert json.loads(result.stdout)["stale_up_to_seconds"] == 0


# --- legacy brownouts stored in the database ---------------------------------------------------

BROWNOUT = ("--start", "2030-03-01T14:00:00Z", "--end", "2030-03-01T15:00:00Z")


@pytest.fixture
def legacy(app_factory, database_url):
    """An app with one configured brownout and one legacy key in workspace acme."""
    from tests.support import QUIET_BUFFER, add_legacy_key

    app, factory = app_factory(
        database_url, KEYMINT_LEGACY_SUNSET="2031-01-01T00:00:00Z",
        KEYMINT_LEGACY_BROWNOUTS="2030-02-01T00:00:00Z/2030-02-01T01:00:00Z", **QUIET_BUFFER)
    factory.workspace(slug="acme")
    add_legacy_key(app, "acme", "legacy-static-key-0001")
    return app


def _legacy_me(app):
    return app.test_client().get("/api/v1/me", headers={"X-API-Key": "legacy-static-key-0001"})


def test_brownouts_add_list_remove_and_the_guard_follows(legacy):
    from freezegun import freeze_time

    runner = legacy.test_cli_runner()
    with freeze_time("2030-01-01T00:00:00Z"):
        added = runner.invoke(args=["legacy", "brownouts", "add", *BROWNOUT, "--json"])
        assert added.exit_code == 0, added.output
        stored = json.loads(added.output)
        assert stored == {"id": stored["id"], "source": "database",
                          "starts_at": "2030-03-01T14:00:00Z", "ends_at": "2030-03-01T15:00:00Z"}
        listed = json.loads(runner.invoke(args=["legacy", "brownouts", "list", "--json"]).output)
        assert listed == {"sunset_at": "2031-01-01T00:00:00Z", "brownouts": [
            {"id": None, "source": "config", "starts_at": "2030-02-01T00:00:00Z",
             "ends_at": "2030-02-01T01:00:00Z"}, stored]}
        (event,) = audit_events(legacy, "legacy.brownout_added")
        assert event.target_id == stored["id"] and event.details == {
            "starts_at": "2030-03-01T14:00:00Z", "ends_at": "2030-03-01T15:00:00Z"}
    # the stored window refuses legacy keys exactly from its start until its end
    with freeze_time("2030-03-01T13:59:59Z"):
        assert _legacy_me(legacy).status_code == 200
    with freeze_time("2030-03-01T14:00:00Z"):
        refused = _legacy_me(legacy)
        assert refused.status_code == 401
        assert refused.get_json()["brownout_ends_at"] == "2030-03-01T15:00:00Z"
        removed = runner.invoke(args=["legacy", "brownouts", "remove", stored["id"]])
        assert removed.exit_code == 0, removed.output
        assert _legacy_me(legacy).status_code == 401  # this process re-reads within 10 s
    with freeze_time("2030-03-01T14:00:10Z"):
        assert _legacy_me(legacy).status_code == 200  # removed: the window no longer applies
    with freeze_time("2030-03-01T15:00:00Z"):
        assert _legacy_me(legacy).status_code == 200
        assert len(audit_events(legacy, "legacy.brownout_removed")) == 1
        past = json.loads(runner.invoke(args=["legacy", "brownouts", "list", "--all",
                                              "--json"]).output)["brownouts"]
        assert [b["source"] for b in past] == ["config"]


def test_brownouts_add_refuses_bad_windows(legacy):
    from freezegun import freeze_time

    runner = legacy.test_cli_runner()
    with freeze_time("2030-01-01T00:00:00Z"):
        for args, message in (
                (("--start", "2030-03-01T15:00:00Z", "--end", "2030-03-01T14:00:00Z"),
                 "a brownout must end after it starts"),
                (("--start", "2029-03-01T14:00:00Z", "--end", "2029-03-01T15:00:00Z"),
                 "a brownout must end in the future"),
                (("--start", "2030-03-01T14:00:00", "--end", "2030-03-01T15:00:00Z"),
                 "no timezone")):
            result = runner.invoke(args=["legacy", "brownouts", "add", *args])
            assert result.exit_code == 2 and message in result.output, result.output
        missing = runner.invoke(args=["legacy", "brownouts", "remove", "999"])
        assert missing.exit_code == 1 and "no stored brownout 999" in missing.output
    assert audit_events(legacy, "legacy.brownout_added") == []
