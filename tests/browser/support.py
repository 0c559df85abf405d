"""Browser-test helpers (no fixtures): the running console, signing in, screenshots, axe.

Playwright drives Debian's /usr/bin/chromium (Playwright's own browser download is not
reachable from these machines). Without it or without Playwright the browser tests skip
with the reason, except under CI=true where they fail: CI must run them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import (
    GRANT,
    IN_CI,
    PG_URL,
    REPO,
    ServerProcess,
    dispose,
    migrate,
    worker_db_name,
)

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, offline Chromium: no update checks, no QUIC, no sync (none of it is reachable here).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
SECRET_KEY = "YnJvd3Nlci10ZXN0cy1jb25zb2xlLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ"  # URL-safe base64
WORKSPACE = "acme"
# Everyone the journeys sign in as; seeded once per server (see `console`).
SECRET = re.compile(r"sk_[0-9A-Za-z]{46}")  # a client_secret as keymint makes them
CLIENT_ID = re.compile(r"key_[0-9A-Za-z]{24}")
PEOPLE = {"owner": "olivia.owner@example.com", "admin": "adam.admin@example.com",
          "member": "mia.member@example.com", "member2": "max.member@example.com",
          "leaver": "lee.leaver@example.com"}


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    try:
        import axe_playwright_python  # noqa: F401
    except ImportError:
        return "axe-playwright-python is not installed (pip install -e '.[dev]')"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return "/usr/bin/chromium is missing (apt-get install chromium; .ci/run does it)"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`, but fail under CI=true, where every browser test must run."""
    if IN_CI:
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}")
    pytest.skip(reason)


@contextmanager
def browser_database(backend: str, sqlite_template: Path, workdir: Path) -> Iterator[str]:
    """A migrated database of the browser suite alone, on `backend`.

    On PostgreSQL it is its own database per xdist worker (not the worker's test database,
    which the functional tests truncate before each test)."""
    if backend == "sqlite":
        path = workdir / "keymint.sqlite3"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    base = make_url(PG_URL)
    name = f"{worker_db_name()}_browser"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Console:
    """A running keymint with the console, its database and the seeded team of `PEOPLE`."""

    server: ServerProcess
    database_url: str
    backend: str
    env: dict[str, str]
    app: Any
    sso: dict[str, Any] | None = None
    people: dict[str, str] = field(default_factory=lambda: dict(PEOPLE))
    signed_in: dict[str, Any] = field(default_factory=dict)  # email -> storage state

    @property
    def url(self) -> str:
        return self.server.url

    def page_url(self, path: str) -> str:
        """The absolute URL of a console path; "keys" -> /console/w/acme/keys."""
        if path.startswith("/"):
            return self.url + path
        return f"{self.url}/console/w/{WORKSPACE}/{path}".rstrip("/")

    def cli(self, *args: str) -> str:
        """Run a `keymint` command (the app's own CLI, in this process) on the server's
        database; its output. Faster than a process per seed step; login links use the
        real executable (`login_link`)."""
        result = self.app.test_cli_runner().invoke(args=list(args))
        dispose(self.app)
        if result.exit_code != 0:
            raise AssertionError(f"keymint {' '.join(args)} failed: {result.output}")
        return result.output

    def create_key(self, email: str, name: str, scopes: str = "keys:read") -> dict[str, Any]:
        """A key made with `keymint keys create --json` (client_id, client_secret, ...)."""
        return json.loads(self.cli("keys", "create", "--workspace", WORKSPACE, "--user", email,
                                   "--name", name, "--scope", scopes, "--json"))

    def login_link(self, email: str, *, executable: bool = True) -> str:
        """A sign-in URL from `keymint console login-link EMAIL`: the real executable in its
        own process, or (`executable=False`, for the fixtures' setup sign-ins) the same
        command through this process's app, which saves a Python start-up per person."""
        if executable:
            result = subprocess.run(
                [sys.executable, "-m", "app.cli", "console", "login-link", email], cwd=REPO,
                env=self.env, capture_output=True, timeout=60, check=False)
            assert result.returncode == 0, result.stderr.decode()
            output = result.stdout.decode()
        else:
            output = self.cli("console", "login-link", email, "--base-url", self.url)
        found = re.search(r"https?://\S+/console/sign-in/link/\S+", output)
        assert found, f"no sign-in URL in the output of login-link: {output!r}"
        return found.group(0)

    def token(self, client_id: str, secret: str) -> requests.Response:
        """POST /oauth/token (client_credentials, Basic auth) to this server."""
        return requests.post(f"{self.url}/oauth/token", data=GRANT, auth=(client_id, secret),
                             timeout=10)


# --- in a page ----------------------------------------------------------------------------


def sign_in_by_link(page: Any, console: Console, email: str, *, executable: bool = True) -> None:
    """Sign in as `email` the way a person without SSO does: run the real
    `keymint console login-link EMAIL`, open the URL, press Continue."""
    from playwright.sync_api import expect

    page.goto(console.login_link(email, executable=executable))
    page.get_by_role("button", name=re.compile("Continue", re.I)).click()
    expect(page).not_to_have_url(re.compile(r"/sign-in"))
    expect(page.get_by_text(email).first).to_be_visible()


# Replaces every secret-, token- and id-shaped value in the page's text with PREFIX_EXAMPLE…
# (and window.__keymintUnmask() puts them back), for the screenshots copied into docs/.
_MASK = r"""() => {
    const shaped = /\b(sk|at|key|tok|whe|whsec|whd|sil|cs)_[0-9A-Za-z+\/=-]{4,}…?/g;
    const changed = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const masked = node.nodeValue.replace(shaped, (_, prefix) => prefix + "_EXAMPLE…");
        if (masked !== node.nodeValue) {
            changed.push([node, node.nodeValue]);
            node.nodeValue = masked;
        }
    }
    window.__keymintUnmask = () => changed.forEach(([node, value]) => { node.nodeValue = value; });
    return changed.length;
}"""


def _save(target: Path, data: bytes) -> None:
    """Write whole, then rename: parallel workers may shoot the same page name."""
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)


def inspect_page(console: Console, page: Any, name: str, what: str) -> None:
    """Screenshots and axe-core on the page as it is now, at desktop (1280x800) and mobile
    (390x844) width: tests/browser/artifacts/NAME-desktop.png and NAME-mobile.png (and under
    artifacts/docs/ the same with credential-shaped values masked, the copy for docs/console/),
    and no serious or critical axe violation (the failure lists each: rule, impact, help,
    elements).

    Done on the SQLite server only: the markup does not depend on the database, and the
    journeys that lead to the page run on both."""
    if console.backend != "sqlite":
        return
    from axe_playwright_python.sync_playwright import Axe

    (ARTIFACTS / "docs").mkdir(parents=True, exist_ok=True)
    axe = Axe()
    before = page.viewport_size
    bad: list[str] = []
    for label, size in (("desktop", DESKTOP), ("mobile", MOBILE)):
        page.set_viewport_size(size)
        _save(ARTIFACTS / f"{name}-{label}.png", page.screenshot(animations="disabled"))
        # The copy for docs/console/ shows no credential-shaped value, not even a test one.
        assert page.evaluate(_MASK) >= 0
        _save(ARTIFACTS / "docs" / f"{name}-{label}.png", page.screenshot(animations="disabled"))
        page.evaluate("window.__keymintUnmask()")
        for v in axe.run(page).response["violations"]:
            if v["impact"] in ("serious", "critical"):
                nodes = "; ".join(" ".join(node["target"]) + " " + node["html"][:120]
                                  for node in v["nodes"])
                bad.append(f"- [{label}] {v['id']} ({v['impact']}): {v['help']} -> {nodes}")
    if before:
        page.set_viewport_size(before)
    assert not bad, (f"axe: {len(bad)} serious/critical violation(s) on {what} "
                     f"({page.url}):\n" + "\n".join(bad))


def secret_on(page: Any) -> str:
    """The one client_secret the page shows (fails when there is none or several)."""
    found = set(SECRET.findall(page.content()))
    assert len(found) == 1, f"expected one secret on {page.url}, found {len(found)}"
    return found.pop()


@dataclass
class CreatedKey:
    """What the create-key result page showed: the key's id, its secret, the answer's headers."""

    client_id: str
    secret: str
    headers: dict[str, str]


def create_key_in_ui(page: Any, console: Console, name: str) -> CreatedKey:
    """Fill in the new-key form as a person does (name, the first scope offered, 30 days) and
    submit it; the result page is left open."""
    page.goto(console.page_url("keys/new"))
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("group", name=re.compile("Scopes")).get_by_role("checkbox").first.check()
    page.get_by_role("radio", name="30 days").check()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    response = answer.value
    assert response.status == 200, response.text()
    page.wait_for_load_state()
    client_id = CLIENT_ID.search(page.content())
    assert client_id, "the result page names no client_id"
    return CreatedKey(client_id.group(0), secret_on(page), response.headers)
