"""KEYMINT_CONSOLE_OIDC_*: all three or none, the issuer's form, the secret masked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo

from app.cli import EXIT_CONFIG, _load_app, build_cli

SECRET = "oidc-client-secret-hunter2-0123456789"
FULL = {"KEYMINT_CONSOLE_OIDC_ISSUER": "https://idp.example.com/",
        "KEYMINT_CONSOLE_OIDC_CLIENT_ID": "keymint",
        "KEYMINT_CONSOLE_OIDC_CLIENT_SECRET": SECRET}


def run(*args: str, env: dict[str, str]) -> Any:
    info = ScriptInfo(create_app=_load_app, set_debug_flag=False)
    return CliRunner().invoke(build_cli(), list(args), obj=info, env=env)


@pytest.fixture
def sqlite_env(sqlite_url: str) -> dict[str, str]:
    return {"KEYMINT_DATABASE_URL": sqlite_url, "KEYMINT_RATELIMIT_ENABLED": "false"}


def test_config_check_shows_the_settings_with_the_secret_masked(sqlite_env) -> None:
    result = run("config", "check", "--json", env={**sqlite_env, **FULL})
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert settings["KEYMINT_CONSOLE_OIDC_ISSUER"] == "https://idp.example.com"
    assert settings["KEYMINT_CONSOLE_OIDC_CLIENT_ID"] == "keymint"
    assert settings["KEYMINT_CONSOLE_OIDC_CLIENT_SECRET"] == "********"
    text = run("config", "check", env={**sqlite_env, **FULL})
    assert text.exit_code == 0
    assert SECRET not in result.output + text.output


def test_none_set_is_fine_and_means_no_single_sign_on(sqlite_env) -> None:
    result = run("config", "check", "--json", env=sqlite_env)
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert settings["KEYMINT_CONSOLE_OIDC_ISSUER"] is None
    assert settings["KEYMINT_CONSOLE_OIDC_CLIENT_SECRET"] is None


@pytest.mark.parametrize("missing", sorted(FULL))
def test_two_of_three_is_a_configuration_error_naming_the_missing_one(sqlite_env,
                                                                      missing: str) -> None:
    env = {**sqlite_env, **{k: v for k, v in FULL.items() if k != missing}}
    result = run("config", "check", env=env)
    assert result.exit_code == EXIT_CONFIG, result.output
    line = result.stderr.strip()
    assert line.startswith("keymint: configuration error: console single sign-on needs ")
    assert line.endswith(f"{missing} not set")
    assert SECRET not in result.output


@pytest.mark.parametrize(("issuer", "problem"), [
    ("http://idp.example.com", "may use http only on a loopback host"),
    ("idp.example.com", "must be an absolute http(s) URL"),
    ("https://idp.example.com/?tenant=1", "must have no query or fragment"),
])
def test_an_unusable_issuer_is_refused_at_start_up(sqlite_env, issuer: str, problem: str) -> None:
    result = run("config", "check", env={**sqlite_env, **FULL,
                                         "KEYMINT_CONSOLE_OIDC_ISSUER": issuer})
    assert result.exit_code == EXIT_CONFIG, result.output
    assert result.stderr.startswith(
        f"keymint: configuration error: KEYMINT_CONSOLE_OIDC_ISSUER {problem}")


def test_plain_http_is_allowed_on_loopback(sqlite_env) -> None:
    result = run("config", "check", "--json", env={
        **sqlite_env, **FULL, "KEYMINT_CONSOLE_OIDC_ISSUER": "http://127.0.0.1:9000"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["KEYMINT_CONSOLE_OIDC_ISSUER"] == \
        "http://127.0.0.1:9000"
