"""`keys expiring --within-days N`: active keys that lapse soon, soonest first, for admins to
act on; exit code 4 when any, so that cron or a monitoring check can alert on it."""

from __future__ import annotations

import json

from freezegun import freeze_time

from app.cli import EXIT_KEYS_EXPIRING


def test_keys_expiring_lists_only_active_keys_lapsing_within_the_window(app, factory):
    runner = app.test_cli_runner()
    with freeze_time("2030-01-01T00:00:00Z"):
        slug = factory.workspace()
        other = factory.workspace()
        soon = factory.key(slug, expires_in_days=3)
        edge = factory.key(slug, expires_in_days=7)
        later = factory.key(slug, expires_in_days=8)
        never = factory.key(slug)
        gone = factory.key(slug, expires_in_days=2)
        elsewhere = factory.key(other, expires_in_days=1)
        assert runner.invoke(args=["keys", "revoke", gone.client_id]).exit_code == 0
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7", "--json"])
        assert result.exit_code == EXIT_KEYS_EXPIRING == 4, result.output
        listed = [k["client_id"] for k in json.loads(result.output)["keys"]]
        assert listed == [elsewhere.client_id, soon.client_id, edge.client_id]  # soonest first
        assert later.client_id not in listed and never.client_id not in listed
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7",
                                     "--workspace", slug, "--json"])
        assert {k["client_id"] for k in json.loads(result.output)["keys"]} == {
            soon.client_id, edge.client_id}
    with freeze_time("2030-01-05T00:00:00Z"):
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7"])
        assert soon.client_id not in result.output  # already expired: not "expiring"
        assert edge.client_id in result.output and later.client_id in result.output
        assert result.output.index(edge.client_id) < result.output.index(later.client_id)
        assert result.exit_code == EXIT_KEYS_EXPIRING


def test_keys_expiring_exits_0_when_nothing_expires_in_the_window(app, factory):
    runner = app.test_cli_runner()
    with freeze_time("2030-01-01T00:00:00Z"):
        slug = factory.workspace()
        factory.key(slug, expires_in_days=8)
        factory.key(slug)
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7"])
        assert (result.exit_code, result.output) == (0, "")
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7", "--json"])
        assert result.exit_code == 0 and json.loads(result.output) == {"keys": []}
    with freeze_time("2030-01-02T00:00:00Z"):  # the key expiring 2030-01-09 is now 7 days out
        result = runner.invoke(args=["keys", "expiring", "--within-days", "7"])
        assert result.exit_code == EXIT_KEYS_EXPIRING


def test_keys_expiring_rejects_a_bad_window(app):
    result = app.test_cli_runner().invoke(args=["keys", "expiring", "--within-days", "0"])
    assert result.exit_code != 0 and "within-days" in result.output
