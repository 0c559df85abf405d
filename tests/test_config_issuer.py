"""KEYMINT_ISSUER checked at start-up, and `keymint serve` off loopback requires it (#15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from app.config import ConfigError, build_config, load_from_environment
from tests.support import REPO


@pytest.fixture(autouse=True)
def _no_issuer_in_the_environment(monkeypatch):
    monkeypatch.delenv("KEYMINT_ISSUER", raising=False)


def _issuer(value: str | None, tmp_path) -> Any:
    return build_config({"KEYMINT_ISSUER": value}, str(tmp_path))["KEYMINT_ISSUER"]


@pytest.mark.parametrize(("given", "expected"), [
    ("https://auth.example.com", "https://auth.example.com"),
    ("https://auth.example.com/", "https://auth.example.com"),
    ("https://auth.example.com//", "https://auth.example.com"),
    ("https://auth.example.com:8443/tenant/", "https://auth.example.com:8443/tenant"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://127.3.4.5/", "http://127.3.4.5"),
    ("http://localhost:8000/", "http://localhost:8000"),
    ("http://LOCALHOST:8000", "http://LOCALHOST:8000"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    (None, None),
    ("", None),
])
def test_valid_issuers_are_kept_without_a_trailing_slash(tmp_path, given, expected):
    assert _issuer(given, tmp_path) == expected


@pytest.mark.parametrize("given", [
    "http://auth.example.com",          # plain http off loopback
    "http://10.0.0.1:8000",
    "http://0.0.0.0:8000",
    "http://[::]:8000",
    "http://127.0.0.1.nip.io",          # a name that merely starts like a loopback address
    "http://localhost.example.com",
    "ftp://auth.example.com",
    "auth.example.com",                 # not absolute
    "//auth.example.com",
    "/oauth",
    "https://",
    "https:///path",
    "https://auth.example.com?tenant=1",
    "https://auth.example.com/?",
    "https://auth.example.com#top",
    "https://auth.example.com/#",
    "https://auth.example.com:99999",
    "https://auth.example.com:port",
    "https://auth example.com",
    "http://[::1:8000",
    "https://auth.example.com\n",
    "https://bücher.example",
])
def test_invalid_issuers_stop_start_up_naming_the_variable_and_the_form(tmp_path, given):
    with pytest.raises(ConfigError) as caught:
        _issuer(given, tmp_path)
    message = str(caught.value)
    assert message.startswith("KEYMINT_ISSUER")
    assert "https" in message and "loopback" in message
    assert "\n" not in message


@pytest.mark.parametrize("given", ["https://admin:hunter2@auth.example.com",
                                   "https://admin:hunter2 @auth.example.com",
                                   "http://admin:hunter2@10.0.0.1"])
def test_credentials_in_an_issuer_are_refused_and_not_repeated(tmp_path, given):
    with pytest.raises(ConfigError, match="KEYMINT_ISSUER") as caught:
        _issuer(given, tmp_path)
    assert "hunter2" not in str(caught.value)


def test_the_environment_variable_is_checked_too(monkeypatch):
    monkeypatch.setenv("KEYMINT_ISSUER", "http://auth.example.com")
    with pytest.raises(ConfigError, match="KEYMINT_ISSUER"):
        load_from_environment()
    monkeypatch.setenv("KEYMINT_ISSUER", "https://auth.example.com/")
    assert load_from_environment()["KEYMINT_ISSUER"] == "https://auth.example.com"


def test_create_app_refuses_an_invalid_issuer(tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.setenv("KEYMINT_ISSUER", "https://auth.example.com?x=1")
    with pytest.raises(ConfigError, match="KEYMINT_ISSUER"):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/k.sqlite3"})


def test_a_trailing_slash_never_doubles_in_the_metadata(app_config):
    from app import create_app

    app = create_app({**app_config, "KEYMINT_ISSUER": "https://auth.example.com/"})
    body = app.test_client().get("/.well-known/oauth-authorization-server").get_json()
    assert body["issuer"] == "https://auth.example.com"
    assert body["token_endpoint"] == "https://auth.example.com/oauth/token"


# --- keymint serve -------------------------------------------------------------------------

@pytest.fixture
def cli_app(tmp_path, monkeypatch):
    """An app whose `serve` records its call instead of starting Granian."""
    from app import create_app
    from app.runtime import server

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "serve_wsgi",
                        lambda _target, **kwargs: calls.append(kwargs))

    def make(**config: Any):
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/k.sqlite3",
                          **config})
        return app, calls
    return make


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", ":8000", "[::]:8000", "10.1.2.3:80",
                                  "auth.example.com:8000", "unix:/run/keymint.sock"])
def test_serve_off_loopback_without_an_issuer_refuses_to_start(cli_app, bind):
    app, calls = cli_app()
    result = app.test_cli_runner().invoke(args=["serve", "--bind", bind, "--workers", "1"])
    assert result.exit_code != 0
    assert calls == []
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "KEYMINT_ISSUER" in lines[0] and bind in lines[0]


@pytest.mark.parametrize("bind", ["127.0.0.1:8000", "127.0.0.2:9000", "localhost:8000",
                                  "localhost", "[::1]:8000"])
def test_serve_on_loopback_needs_no_issuer(cli_app, bind):
    app, calls = cli_app()
    result = app.test_cli_runner().invoke(args=["serve", "--bind", bind, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert calls == [{"bind": bind, "workers": 1}]


def test_serve_anywhere_with_an_issuer(cli_app):
    app, calls = cli_app(KEYMINT_ISSUER="https://auth.example.com")
    result = app.test_cli_runner().invoke(args=["serve", "--bind", "0.0.0.0:8000",
                                                "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert calls == [{"bind": "0.0.0.0:8000", "workers": 1}]


@pytest.mark.slow
def test_the_real_command_exits_with_one_line(tmp_path):
    env = {**os.environ, "KEYMINT_DATABASE_URL": f"sqlite:///{tmp_path}/k.sqlite3"}
    env.pop("KEYMINT_ISSUER", None)
    # A Unix socket in the test's own directory: if the refusal were missing, nothing on the
    # network would be exposed while the test waits.
    bind = f"unix:{tmp_path}/keymint.sock"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--bind", bind],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("keymint serve started without KEYMINT_ISSUER on a non-loopback bind")
    assert proc.returncode != 0
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "KEYMINT_ISSUER" in lines[0], err.decode()
