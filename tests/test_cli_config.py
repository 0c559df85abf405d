"""`keymint` start-up: an invalid setting or an unusable database is one line on stderr with
a documented exit code; `config check`; the legacy-sunset warning; the command surface."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo
from freezegun import freeze_time

from app.cli import EXIT_CONFIG, EXIT_DATABASE, _load_app, build_cli
from app.clock import parse_rfc3339
from tests.support import REPO, add_legacy_key, all_rows, set_disabled

HMAC_KEY = "aGVsbG8taGVsbG8taGVsbG8taGVsbG8taGVsbG8taGVsbG8"  # 35 bytes, URL-safe base64
METRICS_TOKEN = "metrics-token-0123456789-abcdefghijklmnop"
SUNSET = "2027-06-30T00:00:00Z"


def run(*args: str, env: dict[str, str] | None = None, app: Any = None,
        stdin: str | None = None) -> Any:
    """`keymint ARGS` in-process: the real command group, loading the app as main() does
    (from the environment) unless `app` is given."""
    info = ScriptInfo(create_app=(lambda: app) if app is not None else _load_app,
                      set_debug_flag=False)
    return CliRunner().invoke(build_cli(), list(args), obj=info, env=env, input=stdin)


@pytest.fixture
def sqlite_env(sqlite_url: str) -> dict[str, str]:
    return {"KEYMINT_DATABASE_URL": sqlite_url, "KEYMINT_RATELIMIT_ENABLED": "false"}


@pytest.mark.parametrize(("name", "value", "form"), [
    ("KEYMINT_ACCESS_TOKEN_TTL", "abc", "must be an integer >= 1"),
    ("KEYMINT_ACCESS_TOKEN_TTL", "0", "must be an integer >= 1"),
    ("KEYMINT_RATELIMIT_ENABLED", "maybe", "must be true or false"),
    ("KEYMINT_LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
    ("KEYMINT_LEGACY_SUNSET", "next tuesday", "must be an RFC 3339 instant with an offset"),
    ("KEYMINT_LEGACY_SUNSET", "2030-01-01T00:00:00", "must be an RFC 3339 instant"),
    ("KEYMINT_LEGACY_BROWNOUTS", "2030-01-01T00:00:00Z", "is not START/END"),
    ("KEYMINT_RATELIMIT_IP", "lots", "must be a rate limit like '120 per minute'"),
    ("KEYMINT_RATELIMIT_STORAGE_URL", "redis:/oops", "must be memory:// or a limits storage"),
    ("KEYMINT_ISSUER", "http://auth.example.com", "may use http only on a loopback host"),
    ("KEYMINT_AUDIT_HMAC_KEY", "c2hvcnQ", "must be at least 32 random bytes"),
    ("KEYMINT_METRICS_TOKEN", "short", "must be at least 32 characters"),
    ("KEYMINT_DATABASE_URL", "mysql://root:hunter2@db/keymint",
     "must be sqlite:///PATH or postgresql+psycopg://"),
    ("KEYMINT_DATABASE_URL", "not a url", "must be sqlite:///PATH"),
])
def test_an_invalid_setting_is_one_line_naming_it_and_its_form_exit_2(
        sqlite_env: dict[str, str], name: str, value: str, form: str) -> None:
    for command in (("config", "check"), ("serve",), ("users", "list"), ("--help",)):
        result = run(*command, env={**sqlite_env, name: value})
        assert result.exit_code == EXIT_CONFIG, (command, result.output)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert re.match(rf"keymint: configuration error: {name}[ :]", lines[0])
        assert form in lines[0]
        assert "Traceback" not in result.output
        assert "hunter2" not in result.output


def test_an_unreachable_database_is_one_line_exit_3_without_the_password() -> None:
    env = {"KEYMINT_DATABASE_URL": "postgresql+psycopg://ops:hunter2@127.0.0.1:1/keymint",
           "KEYMINT_DATABASE_CONNECT_TIMEOUT": "1"}
    for command in (("keys", "list"), ("users", "create", "ann@example.com"),
                    ("config", "check"), ("db", "upgrade")):
        result = run(*command, env=env)
        assert result.exit_code == EXIT_DATABASE, (command, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("keymint: cannot use the database "
                                   "postgresql+psycopg://ops:***@127.0.0.1:1/keymint: ")
        assert "hunter2" not in result.output and "Traceback" not in result.output


def test_a_database_never_migrated_says_run_db_upgrade(tmp_path: Any) -> None:
    env = {"KEYMINT_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    result = run("keys", "list", env=env)
    assert result.exit_code == EXIT_DATABASE
    assert result.stderr.strip() == ("keymint: the database is not migrated (no such table: "
                                     "api_keys); run `keymint db upgrade`")


def test_config_check_before_the_first_migration_warns_instead_of_failing(tmp_path) -> None:
    # The documented order on a new installation: config check, then db upgrade.
    env = {"KEYMINT_DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"}
    result = run("config", "check", "--json", env=env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["warnings"] == [
        "the database is reachable but not migrated yet: run `keymint db upgrade`"]


def test_config_check_prints_every_setting_with_secrets_and_passwords_masked(
        sqlite_env: dict[str, str]) -> None:
    env = {**sqlite_env, "KEYMINT_AUDIT_HMAC_KEY": HMAC_KEY, "KEYMINT_METRICS_TOKEN": METRICS_TOKEN,
           "KEYMINT_SECRET_KEY": HMAC_KEY,
           "KEYMINT_RATELIMIT_STORAGE_URL": "redis://:hunter2@127.0.0.1:6379/11",
           "KEYMINT_ISSUER": "https://auth.example.com/", "KEYMINT_ACCESS_TOKEN_TTL": "600"}
    text = run("config", "check", env=env)
    assert text.exit_code == 0, text.output
    shown = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert shown["KEYMINT_ISSUER"] == "https://auth.example.com"
    assert shown["KEYMINT_ACCESS_TOKEN_TTL"] == "600"
    assert shown["KEYMINT_AUDIT_HMAC_KEY"] == "********"
    assert shown["KEYMINT_LEGACY_MIGRATION_URL"] == "(not set)"
    # one column for every value, however long the longest name
    assert len({line.index(value) for line in text.stdout.splitlines()
                for value in [line.split(None, 1)[1]]}) == 1
    assert text.stderr.splitlines()[-1] == "configuration OK"

    result = run("config", "check", "--json", env=env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    settings = payload["settings"]
    assert payload["ok"] is True and payload["warnings"] == []
    assert settings["KEYMINT_AUDIT_HMAC_KEY"] == settings["KEYMINT_METRICS_TOKEN"] == "********"
    assert settings["KEYMINT_SECRET_KEY"] == "********"
    assert settings["KEYMINT_RATELIMIT_STORAGE_URL"] == "redis://:***@127.0.0.1:6379/11"
    assert settings["KEYMINT_DATABASE_URL"] == sqlite_env["KEYMINT_DATABASE_URL"]
    assert settings["KEYMINT_LEGACY_SUNSET"] == "2025-12-31T23:59:59Z"
    assert settings["KEYMINT_RATELIMIT_LEGACY_KEY"] == "600 per minute"
    assert all(name.startswith("KEYMINT_") for name in settings)
    for secret in (HMAC_KEY, METRICS_TOKEN, "hunter2"):
        assert secret not in text.output + result.output


# --- the legacy sunset warning ----------------------------------------------------------------

@pytest.fixture
def legacy_app(app_factory: Any, database_url: str) -> Any:
    application, factory = app_factory(database_url, KEYMINT_LEGACY_SUNSET=SUNSET)
    factory.workspace(slug="acme")
    return application


def _warnings(app: Any) -> list[str]:
    result = run("config", "check", "--json", app=app)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["warnings"]


def test_sunset_warning_starts_30_days_before_while_legacy_keys_are_enabled(legacy_app):
    sunset = parse_rfc3339(SUNSET)
    add_legacy_key(legacy_app, "acme", "legacy-key-0000000000000001")
    with freeze_time(sunset - timedelta(days=30, microseconds=1)):
        assert _warnings(legacy_app) == []
    with freeze_time(sunset - timedelta(days=30)):
        assert _warnings(legacy_app) == [
            "KEYMINT_LEGACY_SUNSET (2027-06-30T00:00:00Z) is 30 day(s) 0 hour(s) away and 1 "
            "legacy key(s) are still enabled: migrate them before then (`keymint legacy "
            "report`)"]
    with freeze_time(sunset - timedelta(microseconds=1)):
        assert "is 0 day(s) 0 hour(s) away" in _warnings(legacy_app)[0]
    with freeze_time(sunset):
        (warning,) = _warnings(legacy_app)
        assert warning.startswith("KEYMINT_LEGACY_SUNSET (2027-06-30T00:00:00Z) has passed "
                                  "and 1 legacy key(s) are still enabled")
        text = run("config", "check", app=legacy_app)
        assert f"warning: {warning}" in text.stderr.splitlines()


def test_no_sunset_warning_once_every_legacy_key_is_disabled(legacy_app):
    legacy_id = add_legacy_key(legacy_app, "acme", "legacy-key-0000000000000002")
    set_disabled(legacy_app, legacy_id)
    with freeze_time(parse_rfc3339(SUNSET) + timedelta(days=1)):
        assert _warnings(legacy_app) == []


# --- the command surface ----------------------------------------------------------------------

OPERATOR_COMMANDS = {"audit", "config", "db", "demo", "invitations", "keys", "legacy", "members",
                     "ratelimit", "serve", "tokens", "users", "workspaces"}


def _listed(help_text: str) -> set[str]:
    section = help_text.split("Commands:\n", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")
            and not line.startswith("   ")}


def test_help_lists_keymint_commands_only_and_version(sqlite_env: dict[str, str]) -> None:
    result = run("--help", env=sqlite_env)
    assert result.exit_code == 0
    listed = _listed(result.stdout)
    assert listed >= OPERATOR_COMMANDS  # other groups may be added beside these
    assert not listed & {"run", "shell", "routes", "dev", "init", "revision", "stamp"}
    assert "--env-file" not in result.stdout and "--app" not in result.stdout

    version = run("--version", env=sqlite_env)
    assert version.exit_code == 0 and version.stdout.startswith("keymint ")

    assert _listed(run("db", "--help", env=sqlite_env).stdout) == {
        "upgrade", "downgrade", "current"}
    dev = _listed(run("dev", "--help", env=sqlite_env).stdout)
    assert {"run", "shell", "routes", "db"} <= dev
    assert {"revision", "stamp", "merge"} <= _listed(
        run("dev", "db", "--help", env=sqlite_env).stdout)


def test_db_downgrade_to_base_asks_first_unless_yes(sqlite_env: dict[str, str],
                                                    sqlite_url: str) -> None:
    def tables() -> set[str]:
        from sqlalchemy import create_engine, inspect

        engine = create_engine(sqlite_url)
        try:
            return set(inspect(engine).get_table_names()) - {"alembic_version"}
        finally:
            engine.dispose()

    before = tables()
    assert "users" in before
    revisions = len(list((REPO / "migrations" / "versions").glob("0*.py")))
    for args, stdin in ((("db", "downgrade", "base"), None),
                        (("db", "downgrade", "base"), "n\n"),
                        (("db", "downgrade", "--", f"-{revisions}"), "\n")):  # head - all
        refused = run(*args, env=sqlite_env, stdin=stdin)
        assert refused.exit_code == 1, refused.output
        assert "drops every keymint table" in refused.stderr
        assert tables() == before

    one_step = run("db", "downgrade", env=sqlite_env)  # -1: no question
    assert one_step.exit_code == 0, one_step.output
    assert "drops every keymint table" not in one_step.output
    assert run("db", "upgrade", env=sqlite_env).exit_code == 0

    confirmed = run("db", "downgrade", "base", env=sqlite_env, stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert tables() == set()
    assert run("db", "upgrade", env=sqlite_env).exit_code == 0
    assert run("db", "downgrade", "base", "--yes", env=sqlite_env).exit_code == 0
    assert tables() == set()
    assert run("db", "upgrade", env=sqlite_env).exit_code == 0
    assert tables() == before  # `db current` prints "(head)": tests/test_cli_wheel.py


def test_commands_still_run_through_the_registered_app_cli(app):
    """register(app) keeps every group on app.cli (tests and `flask --app wsgi` use it)."""
    result = app.test_cli_runner().invoke(args=["users", "create", "ann@example.com"])
    assert result.exit_code == 0, result.output
    assert [row["email"] for row in all_rows(app, "users")] == ["ann@example.com"]
