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
                         "--scope", "keys:read", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [m["legacy_key_id"] for m in payload["migrated"]] == [str(ids["a"]), str(ids["b"])]
    assert [m["name"] for m in payload["migrated"]] == ["billing cron", f"legacy key {ids['b']}"]
    assert payload["skipped_disabled"] == [str(ids["off"])]
    assert payload["disabled"] == [] and payload["already_migrated"] == []
    for entry in payload["migrated"]:
        assert entry["owner"]["email"] == "dev@example.com"
        assert entry["scopes"] == ["keys:read"]
        assert entry["client_secret"].startswith("sk_")
        with freeze_time(BEFORE):
            token = token_response(client, (entry["client_id"], entry["client_secret"]))
            assert token.status_code == 200, token.get_json()
            assert token.get_json()["scope"] == "keys:read"
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
])
def test_migrate_errors_change_nothing(app, factory, workspace, args, message):
    slug, ids = workspace
    factory.user("stranger@example.com")
    result = migrate(app, "--workspace", slug, *args)
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
