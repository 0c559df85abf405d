"""Legacy keys page (admins, owners): usage (this process's pending counts included), the
sunset countdown at its boundary, brownouts, migration state; members get a 403 page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from freezegun import freeze_time

from tests.console.admin_support import OWNER, Acme, make_acme, text
from tests.support import QUIET_BUFFER, add_legacy_key, me

PAGE = "/console/w/acme/legacy-keys"
SUNSET = "2031-01-31T00:00:00Z"
NOW = "2031-01-01T00:00:00Z"  # 30 days before the sunset
BROWNOUT = "2031-01-20T14:00:00Z/2031-01-20T15:00:00Z"


@pytest.fixture
def world(app_factory: Any, database_url: str) -> Any:
    """acme (with two legacy keys) and globex (one), at NOW; the page signed in as each role."""
    app, factory = app_factory(database_url, **QUIET_BUFFER, KEYMINT_LEGACY_SUNSET=SUNSET,
                               KEYMINT_LEGACY_BROWNOUTS=BROWNOUT)
    with freeze_time(NOW):
        acme = make_acme(app, factory)
        add_legacy_key(app, "acme", "acme-legacy-secret-1", "billing cron")
        add_legacy_key(app, "acme", "acme-legacy-secret-2", "reports")
        add_legacy_key(app, factory.workspace(slug="globex"), "globex-legacy", "foreign")
    yield acme
    app.extensions["keymint_legacy_usage"].discard()


def row_of(body: str, label: str) -> str:
    match = re.search(rf"<tr>\s*<td>{label}</td>(.*?)</tr>", body, re.S)
    assert match, f"no row for {label}"
    return match.group(1)


def test_admins_see_usage_counted_a_moment_ago_and_the_countdown(world: Acme) -> None:
    client = world.app.test_client()
    with freeze_time(NOW):
        for _ in range(3):
            assert me(client, "acme-legacy-secret-1",
                      environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
        page = world.admin.get(PAGE)  # the uses are still in the buffer: the page flushes it
    assert page.status_code == 200
    body = text(page)
    assert "<h1>Legacy keys</h1>" in body
    assert "30 days left" in body
    used = row_of(body, "billing cron")
    assert "<td>3</td>" in used and "203.0.113.5" in used and "not migrated" in used
    assert "<td>0</td>" in row_of(body, "reports")
    assert "foreign" not in body and "acme-legacy-secret" not in body
    assert "2031-01-20 14:00 UTC" in body  # the brownout ahead


@pytest.mark.parametrize(("moment", "shown"), [
    ("2031-01-30T23:59:59Z", "1 day left"),
    ("2031-01-31T00:00:00Z", "Legacy keys stopped working at"),
    ("2031-01-31T00:00:01Z", "Legacy keys stopped working at"),
])
def test_the_countdown_at_the_sunset(world: Acme, moment: str, shown: str) -> None:
    with freeze_time(moment):
        client = world.client_of(OWNER)  # a fresh session at that moment
        body = text(client.get(PAGE))
    assert shown in body
    if "stopped" in shown:
        assert "days left" not in body and "day left" not in body
        assert "<span class=\"badge state-sunset\">sunset</span>" in body


def test_the_migration_state_after_legacy_migrate(world: Acme) -> None:
    with freeze_time(NOW):
        result = world.app.test_cli_runner().invoke(args=[
            "legacy", "migrate", "--workspace", "acme", "--owner", OWNER, "--json"])
        assert result.exit_code == 0, result.output
        migrated = {m["name"]: m["client_id"] for m in json.loads(result.stdout)["migrated"]}
        body = text(world.owner.get(PAGE))
    assert f"migrated to <code>{migrated['billing cron']}</code>" in row_of(body, "billing cron")
    assert "not migrated" not in body


def test_a_member_gets_a_403_page(world: Acme) -> None:
    with freeze_time(NOW):
        page = world.member.get(PAGE)
    assert page.status_code == 403
    assert "Only admins and owners" in text(page) and "billing cron" not in text(page)
