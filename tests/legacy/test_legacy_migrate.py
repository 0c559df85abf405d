"""`legacy migrate`: one working per-user API key per legacy key, optional disable, re-runnable."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from freezegun import freeze_time

from tests.support import (
    SUNSET,
    add_legacy_key,
    audit_events,
    legacy_row,
    me,
    set_disabled,
    token_response,
)

BEFORE = SUNSET - timedelta(days=5)


@pytest.fixture
def workspace(app, factory):
    owner = factory.user("owner@example.com")
    slug = factory.workspace(owner=owner, slug="acme")
    factory.member(slug, factory.user("dev@example.com"), role="member")
    ids = {"a": add_legacy_key(app, slug, "legacy-a", "billing cron"),
           "b": add_legacy_key(app, slug, "legacy-b", ""),
           "off": add_legacy_key(app, slug, "legacy-off", "killed")}
    set_disabled(app, ids["off"])
    add_legacy_key(app, factory.workspace(slug="other"), "legacy-other", "not mine")
    return slug, ids


def migrate(app, *args):
    return app.test_cli_runner().invoke(args=["legacy", "migrate", *args])


def test_migrate_creates_working_keys_and_records_them(app, client, workspace):
    slug, ids = workspace
    with freeze_time(BEFORE):
        result = migrate(app, "--workspace", slug, "--owner", "dev@example.com",
                         "--scope", "orders:read", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [m["legacy_key_id"] for m in payload["migrated"]] == [str(ids["a"]), str(ids["b"])]
    assert [m["name"] for m in payload["migrated"]] == ["billing cron", f"legacy key {ids['b']}"]
    assert payload["skipped_disabled"] == [str(ids["off"])]
    assert payload["disabled"] == [] and payload["already_migrated"] == []
    for entry in payload["migrated"]:
        assert entry["owner"]["email"] == "dev@example.com"
        assert entry["scopes"] == ["orders:read"]
        assert entry["client_secret"].startswith("sk_")
        with freeze_time(BEFORE):
            token = token_response(client, (entry["client_id"], entry["client_secret"]))
            assert token.status_code == 200, token.get_json()
            assert token.get_json()["scope"] == "orders:read"
            who = client.get("/api/v1/me", headers={
                "Authorization": f"Bearer {token.get_json()['access_token']}"})
        assert who.get_json()["key"]["client_id"] == entry["client_id"]
        assert who.get_json()["user"]["email"] == "dev@example.com"
    assert legacy_row(app, ids["a"])["migrated_to"] == payload["migrated"][0]["client_id"]
    assert legacy_row(app, ids["off"])["migrated_to"] is None
    events = audit_events(app, "legacy.migrated")
    assert [(e.target_id, e.details["client_id"]) for e in events] == [
        (str(ids["a"]), payload["migrated"][0]["client_id"]),
        (str(ids["b"]), payload["migrated"][1]["client_id"])]
    # not disabled: the legacy key keeps working until the sunset, pointing at its successor
    with freeze_time(BEFORE):
        response = me(client, "legacy-a")
    assert response.status_code == 200
    assert payload["migrated"][0]["client_id"] in " ".join(response.headers.getlist("Link"))


def test_rerun_is_idempotent_and_disable_legacy_stops_them_now(app, client, workspace):
    slug, ids = workspace
    with freeze_time(BEFORE):
        first = migrate(app, "--workspace", slug, "--owner", "owner@example.com", "--json")
        again = migrate(app, "--workspace", slug, "--owner", "owner@example.com", "--json")
    assert json.loads(again.stdout)["migrated"] == []
    assert len(json.loads(again.stdout)["already_migrated"]) == 2
    with freeze_time(BEFORE + timedelta(minutes=1)):
        final = migrate(app, "--workspace", slug, "--owner", "owner@example.com",
                        "--disable-legacy")
        response = me(client, "legacy-a")
    assert final.exit_code == 0, final.output
    assert "0 new key(s)" in final.output and "2 legacy key(s) disabled now" in final.output
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "legacy_key_disabled"
    assert body["replacement_client_id"] == json.loads(first.stdout)["migrated"][0]["client_id"]
    assert {e.target_id for e in audit_events(app, "legacy.disabled")} == {
        str(ids["a"]), str(ids["b"]), str(ids["off"])}  # "off" was disabled by the fixture
    assert legacy_row(app, ids["a"])["disabled_at"] == BEFORE + timedelta(minutes=1)


def test_migrate_with_disable_in_one_go(app, client, workspace):
    slug, _ = workspace
    with freeze_time(BEFORE):
        result = migrate(app, "--workspace", slug, "--owner", "dev@example.com",
                         "--disable-legacy")
        assert result.exit_code == 0, result.output
        assert "2 new key(s)" in result.output and "client_secret sk_" in result.output
        assert me(client, "legacy-b").get_json()["error"] == "legacy_key_disabled"


@pytest.mark.parametrize(("args", "message"), [
    (["--owner", "stranger@example.com"], "not a member"),
    (["--owner", "nobody@example.com"], "no user"),
    (["--owner", "dev@example.com", "--scope", "bad\"scope"], "invalid scope"),
    # a plain member never gets management scopes, however the migration is run
    (["--owner", "dev@example.com", "--scope", "orders:read keys:write"],
     "only admins and owners can hold management scopes (keys:write)"),
    (["--owner", "dev@example.com", "--scope", "audit:read", "--key-id", "A"],
     "management scopes (audit:read)"),
    (["--owner", "dev@example.com", "--label", "billing cron", "--scope", "members:write"],
     "management scopes (members:write)"),
])
def test_migrate_errors_change_nothing(app, factory, workspace, args, message):
    slug, ids = workspace
    factory.user("stranger@example.com")
    result = migrate(app, "--workspace", slug, *[str(ids["a"]) if a == "A" else a for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert legacy_row(app, ids["a"])["migrated_to"] is None
    assert audit_events(app, "legacy.migrated") == []
    assert audit_events(app, "key.created") == []


def test_a_label_imported_with_control_characters_does_not_stop_the_migration(app, factory):
    # Imports before the label check let such labels in; the key gets the fallback name.
    from app.extensions import db
    from app.models import LegacyKey

    slug = factory.workspace(owner=factory.user("boss@example.com"), slug="ctl")
    good = add_legacy_key(app, slug, "legacy-good", "nightly export")
    bad = add_legacy_key(app, slug, "legacy-bad", "placeholder")
    with app.app_context():
        db.session.get(LegacyKey, bad).label = "tab\there\x1b[0m"
        db.session.commit()
    with freeze_time(BEFORE):
        result = migrate(app, "--workspace", slug, "--owner", "boss@example.com", "--json")
    assert result.exit_code == 0, result.output
    names = {m["legacy_key_id"]: m["name"] for m in json.loads(result.stdout)["migrated"]}
    assert names == {str(good): "nightly export", str(bad): f"legacy key {bad}"}


def test_an_admin_may_be_given_management_scopes(app, factory, workspace):
    slug, ids = workspace
    factory.member(slug, factory.user("admin@example.com"), role="admin")
    with freeze_time(BEFORE):
        result = migrate(app, "--key-id", str(ids["a"]), "--owner", "admin@example.com",
                         "--scope", "keys:read keys:write", "--json")
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)["migrated"]
    assert entry["scopes"] == ["keys:read", "keys:write"]
    assert entry["owner"]["email"] == "admin@example.com"


def test_one_key_at_a_time_each_with_its_own_owner_and_scopes(app, client, factory, workspace):
    slug, ids = workspace
    with freeze_time(BEFORE):
        by_label = migrate(app, "--workspace", slug, "--label", "billing cron",
                           "--owner", "dev@example.com", "--scope", "billing:read", "--json")
        by_id = migrate(app, "--key-id", str(ids["b"]), "--owner", "owner@example.com",
                        "--scope", "keys:read", "--disable-legacy", "--json")
    assert by_label.exit_code == 0, by_label.output
    assert by_id.exit_code == 0, by_id.output
    [a] = json.loads(by_label.stdout)["migrated"]
    [b] = json.loads(by_id.stdout)["migrated"]
    assert (a["legacy_key_id"], a["owner"]["email"], a["scopes"]) == (
        str(ids["a"]), "dev@example.com", ["billing:read"])
    assert (b["legacy_key_id"], b["owner"]["email"], b["scopes"]) == (
        str(ids["b"]), "owner@example.com", ["keys:read"])
    assert json.loads(by_label.stdout)["disabled"] == []
    assert json.loads(by_id.stdout)["disabled"] == [str(ids["b"])]
    # only the named key was touched each time
    assert legacy_row(app, ids["a"])["migrated_to"] == a["client_id"]
    assert legacy_row(app, ids["a"])["disabled_at"] is None
    assert legacy_row(app, ids["b"])["migrated_to"] == b["client_id"]
    assert [e.target_id for e in audit_events(app, "legacy.migrated")] == [
        str(ids["a"]), str(ids["b"])]
    with freeze_time(BEFORE):
        assert me(client, "legacy-a").status_code == 200
        assert me(client, "legacy-b").get_json()["error"] == "legacy_key_disabled"
        token = token_response(client, (a["client_id"], a["client_secret"]))
    assert token.get_json()["scope"] == "billing:read"
    # re-running for one key says it was done and creates nothing
    again = migrate(app, "--key-id", str(ids["a"]), "--owner", "owner@example.com")
    assert again.exit_code == 0, again.output
    assert f"legacy key {ids['a']} was already migrated to {a['client_id']}" in again.output
    assert "0 new key(s)" in again.output
    # the workspace run afterwards has nothing left but the disabled key
    rest = json.loads(migrate(app, "--workspace", slug, "--owner", "owner@example.com",
                              "--json").stdout)
    assert rest["migrated"] == [] and rest["skipped_disabled"] == [str(ids["off"])]


def test_a_disabled_key_named_alone_is_skipped(app, workspace):
    _, ids = workspace
    result = migrate(app, "--key-id", str(ids["off"]), "--owner", "owner@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_disabled"] == [str(ids["off"])]
    assert audit_events(app, "key.created") == []


@pytest.mark.parametrize(("args", "message"), [
    (["--owner", "owner@example.com"], "give --workspace"),
    (["--key-id", "1", "--label", "x", "--workspace", "acme", "--owner", "owner@example.com"],
     "not both"),
    (["--key-id", "0", "--owner", "owner@example.com"], "--key-id"),
    (["--key-id", "999999", "--owner", "owner@example.com"], "no legacy key 999999"),
    (["--workspace", "acme", "--label", "nope", "--owner", "owner@example.com"],
     "no legacy key labelled 'nope' in acme"),
    # a key of another workspace is not found through this one
    (["--workspace", "acme", "--key-id", "OTHER", "--owner", "owner@example.com"],
     "in acme"),
])
def test_choosing_one_key_errors_change_nothing(app, workspace, args, message):
    del workspace  # its keys, including the other workspace's, are what is looked up
    with app.app_context():
        from app.extensions import db
        from app.models import LegacyKey
        other = db.session.query(LegacyKey).filter_by(label="not mine").one().id
    args = [str(other) if a == "OTHER" else a for a in args]
    result = migrate(app, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert audit_events(app, "key.created") == []


def test_a_shared_label_names_no_key(app, factory, workspace):
    slug, ids = workspace
    twin = add_legacy_key(app, slug, "legacy-twin", "billing cron")
    result = migrate(app, "--workspace", slug, "--label", "billing cron",
                     "--owner", "owner@example.com")
    assert result.exit_code == 1
    assert f"2 legacy keys of acme are labelled 'billing cron' (ids {ids['a']}, {twin})" \
        in result.output
    assert audit_events(app, "key.created") == []
