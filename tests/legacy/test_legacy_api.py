"""GET /api/v1/legacy-keys (admins, metadata only) and `legacy report`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from freezegun import freeze_time

from tests.support import SUNSET, add_legacy_key, flush, me, mint

BEFORE = SUNSET - timedelta(days=2)


@pytest.fixture
def setup(app, factory):
    owner = factory.user("owner@example.com")
    slug = factory.workspace(owner=owner, slug="acme")
    ids = [add_legacy_key(app, slug, f"acme-legacy-{i}", f"label {i}") for i in range(3)]
    add_legacy_key(app, factory.workspace(slug="globex"), "globex-legacy", "foreign")
    return slug, owner, ids


def bearer(client, factory, slug, email=None, scopes="keys:read", role="admin"):
    if email is None:
        email = factory.member(slug, factory.user(), role=role)
    key = factory.key(slug, email, scopes=scopes)
    return {"Authorization": f"Bearer {mint(client, key)}"}


def test_admin_sees_usage_and_migration_state_metadata_only(app, client, factory, setup):
    slug, _, ids = setup
    with freeze_time(BEFORE):
        for _ in range(4):
            assert me(client, "acme-legacy-1", environ_base={"REMOTE_ADDR": "203.0.113.5"},
                      headers={"User-Agent": "cron/2"}).status_code == 200
        headers = bearer(client, factory, slug)
        response = client.get("/api/v1/legacy-keys", headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["sunset_at"] == "2025-12-31T23:59:59Z"
    assert body["next_cursor"] is None
    assert [k["id"] for k in body["legacy_keys"]] == [str(i) for i in ids]
    used = body["legacy_keys"][1]
    assert used == {
        "id": str(ids[1]), "label": "label 1", "state": "active",
        "imported_at": used["imported_at"], "use_count": 4,
        "first_used_at": "2025-12-29T23:59:59Z", "last_used_at": "2025-12-29T23:59:59Z",
        "last_ip": "203.0.113.5", "last_user_agent": "cron/2", "rejected_count": 0,
        "last_rejected_at": None, "migrated_to": None, "disabled_at": None}
    text = response.get_data(as_text=True)
    assert "acme-legacy" not in text and "digest" not in text and "globex" not in text


def test_owner_sees_sunset_state_after_the_sunset(client, factory, setup):
    slug, owner, _ = setup
    with freeze_time(SUNSET):
        response = client.get("/api/v1/legacy-keys",
                              headers=bearer(client, factory, slug, email=owner))
    assert {k["state"] for k in response.get_json()["legacy_keys"]} == {"sunset"}


def test_members_and_narrow_tokens_are_refused(client, factory, setup):
    slug, owner, _ = setup
    with freeze_time(BEFORE):
        member = client.get("/api/v1/legacy-keys",
                            headers=bearer(client, factory, slug, role="member"))
        narrow = client.get("/api/v1/legacy-keys",
                            headers=bearer(client, factory, slug, email=owner,
                                           scopes="introspect"))
        anonymous = client.get("/api/v1/legacy-keys")
    assert member.status_code == 403 and member.get_json()["error"] == "forbidden"
    assert narrow.status_code == 403 and narrow.get_json()["error"] == "insufficient_scope"
    assert anonymous.status_code == 401


def test_pagination(client, factory, setup):
    slug, owner, ids = setup
    with freeze_time(BEFORE):
        headers = bearer(client, factory, slug, email=owner)
        first = client.get("/api/v1/legacy-keys?limit=2", headers=headers).get_json()
        rest = client.get(f"/api/v1/legacy-keys?limit=2&cursor={first['next_cursor']}",
                          headers=headers).get_json()
        bad = client.get("/api/v1/legacy-keys?limit=0", headers=headers)
    assert [k["id"] for k in first["legacy_keys"]] == [str(i) for i in ids[:2]]
    assert [k["id"] for k in rest["legacy_keys"]] == [str(ids[2])]
    assert rest["next_cursor"] is None
    assert bad.status_code == 400 and bad.get_json()["field"] == "limit"


def test_report_per_workspace(app, client, setup):
    with freeze_time(BEFORE):
        for _ in range(3):
            me(client, "acme-legacy-0")
        me(client, "globex-legacy")
    with freeze_time(SUNSET + timedelta(seconds=5)):
        me(client, "globex-legacy")
    flush(app)
    migrated = app.test_cli_runner().invoke(
        args=["legacy", "migrate", "--workspace", "acme", "--owner", "owner@example.com"])
    assert migrated.exit_code == 0, migrated.output
    result = app.test_cli_runner().invoke(args=["legacy", "report", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "stale_up_to_seconds": app.config["KEYMINT_LEGACY_FLUSH_INTERVAL"], "workspaces": [
        {"workspace": "acme", "keys": 3, "uses": 3, "last_used_at": "2025-12-29T23:59:59Z",
         "migrated": 3, "disabled": 0, "rejections": 0, "last_rejected_at": None},
        {"workspace": "globex", "keys": 1, "uses": 1, "last_used_at": "2025-12-29T23:59:59Z",
         "migrated": 0, "disabled": 0, "rejections": 1,
         "last_rejected_at": "2026-01-01T00:00:04Z"}]}
    table = app.test_cli_runner().invoke(args=["legacy", "report"]).output
    assert "acme" in table and "globex" in table and "never" not in table
