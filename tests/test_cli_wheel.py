"""The installed package: a wheel built from this tree, installed into a fresh virtual
environment outside the source tree, migrates, creates a key, serves and issues a token.

Runs in CI (CI=true too): about a minute, most of it building and installing the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests

from tests.support import REPO, free_port, wait_until

pytestmark = pytest.mark.slow

METRICS_TOKEN = "wheel-test-metrics-token-0123456789abcdef"
SOURCES = ("pyproject.toml", "README.md", "wsgi.py", "app", "migrations")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding only the keymint wheel; its dependencies are the test
    venv's (a .pth line), so the test needs no network and installs nothing else."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info beside its sources
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    dist = root / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(dist), str(source)],  # -v: setuptools' warnings
        capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    # The package data is declared: no "Package 'app.docs' is absent from the `packages`
    # configuration" (nor any other package) warning.
    assert "is absent from the `packages` configuration" not in build.stdout + build.stderr
    assert "Successfully built keymint" in build.stdout
    (wheel,) = dist.glob("keymint-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    target = venv / "bin" / "python"
    site = subprocess.run([str(target), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Without PYTHONPATH: pip would take a checkout's keymint.egg-info for an installed keymint.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target), "install", "--no-deps",
         "--no-index", str(wheel)], capture_output=True, text=True, timeout=300, check=False,
        env=clean)
    assert install.returncode == 0, install.stdout + install.stderr
    # Only now (pip would see the test venv's editable keymint as installed): dependencies
    # from the test venv, appended after the venv's own site-packages so its `app` wins.
    Path(site, "_keymint_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def _env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYMINT_") and k not in ("PYTHONPATH", "FLASK_APP")}
    return {**env, "KEYMINT_DATABASE_URL": f"sqlite:///{database}",
            "KEYMINT_RATELIMIT_ENABLED": "false", "AUTHLIB_INSECURE_TRANSPORT": "1"}


def _keymint(bin_dir: Path, cwd: Path, env: dict[str, str], *args: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "keymint"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_wheel_installs_migrates_serves_and_issues_a_token(installed: Path,
                                                           tmp_path: Path) -> None:
    env = _env(tmp_path / "keymint.sqlite3")
    where = subprocess.run([str(installed / "python"), "-c", "import app; print(app.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # not the checkout

    def ok(*args: str) -> str:
        result = _keymint(installed, tmp_path, env, *args)
        assert result.returncode == 0, f"keymint {' '.join(args)}: {result.stderr}"
        return result.stdout

    assert ok("--version").startswith("keymint 0.")
    assert "  run " not in ok("--help") and "  serve " in ok("--help")
    bad = _keymint(installed, tmp_path, {**env, "KEYMINT_ACCESS_TOKEN_TTL": "soon"}, "db",
                   "upgrade")
    assert (bad.returncode, bad.stderr) == (2, "keymint: configuration error: "
                                           "KEYMINT_ACCESS_TOKEN_TTL must be an integer >= 1, "
                                           "got 'soon'\n")
    ok("db", "upgrade")
    assert "(head)" in ok("db", "current")
    ok("users", "create", "ops@example.com")
    ok("workspaces", "create", "ops", "--owner", "ops@example.com")
    key = json.loads(ok("keys", "create", "--workspace", "ops", "--user", "ops@example.com",
                        "--scope", "introspect", "--json"))

    env["KEYMINT_METRICS_TOKEN"] = METRICS_TOKEN
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([str(installed / "keymint"), "serve", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1"], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(base + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return server.poll() is not None  # stop waiting for a server that exited

    try:
        assert wait_until(healthy, timeout=30) and server.poll() is None, \
            (tmp_path / "serve.log").read_text()
        response = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(key["client_id"], key["client_secret"]), timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["token_type"].lower() == "bearer"
        # The web console's templates and static files ship in the wheel.
        page = requests.get(base + "/console/sign-in", timeout=10)
        assert page.status_code == 200 and "keymint console login-link" in page.text
        assert requests.get(base + "/console/static/console.css", timeout=10).status_code == 200
        assert requests.get(base + "/console/static/copy.js", timeout=10).status_code == 200
        logged = (tmp_path / "serve.log").read_text()
        assert logged.count("effective configuration") == 1
        assert METRICS_TOKEN not in logged
        assert '\\"KEYMINT_METRICS_TOKEN\\": \\"********\\"' in logged
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
