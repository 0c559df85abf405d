"""The OpenID provider console tests sign in through: tests/oidc_provider (node-oidc-provider)
run as a real process, its pytest fixture, and a driver for its sign-in form.

Use the fixture by importing it into a test module:
`from tests.console.oidc_support import oidc_provider_fixture  # noqa: F401`, then ask for
`oidc_provider`. Without node or tests/oidc_provider/node_modules (`npm ci` there; .ci/run and
scripts/test.sh do it) the tests that need it are skipped, except under CI=true where that fails.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.support import IN_CI, REPO

PROVIDER_DIR = REPO / "tests" / "oidc_provider"
CLIENT_ID = "keymint-console"
CLIENT_SECRET = "keymint-console-test-secret-0123456789"
# The Flask test client's default base URL: what the console derives its callback from.
TEST_CLIENT_CALLBACK = "http://localhost/console/sign-in/sso/callback"
START_TIMEOUT = 90.0  # a loaded CI machine starts node slowly


@dataclass
class OidcProvider:
    """A running provider: its issuer, the confidential client keymint uses, its accounts."""

    issuer: str
    client_id: str
    client_secret: str
    accounts_file: Path
    process: subprocess.Popen[str]
    log_file: Path
    accounts: list[dict[str, Any]] = field(default_factory=list)

    def settings(self) -> dict[str, str]:
        """The keymint settings that point the console at this provider."""
        return {"KEYMINT_CONSOLE_OIDC_ISSUER": self.issuer,
                "KEYMINT_CONSOLE_OIDC_CLIENT_ID": self.client_id,
                "KEYMINT_CONSOLE_OIDC_CLIENT_SECRET": self.client_secret}

    def set_accounts(self, accounts: list[dict[str, Any]]) -> None:
        """The people the provider knows: [{"sub"?, "email", "email_verified"}]; the login
        name at its sign-in form is the `sub` (default: the email). Read at every sign-in."""
        self.accounts = accounts
        temporary = self.accounts_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(accounts))
        temporary.replace(self.accounts_file)

    def add_account(self, email: str, *, verified: bool = True, sub: str | None = None) -> str:
        """Add one person (replacing one with the same sub); returns the login name (the sub)
        that signs in as them at the provider's form."""
        sub = sub or email
        others = [a for a in self.accounts if a.get("sub", a.get("email")) != sub]
        self.set_accounts([*others, {"sub": sub, "email": email, "email_verified": verified}])
        return sub


def unavailable_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the console SSO tests run node-oidc-provider)"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return ("tests/oidc_provider/node_modules is missing: run `npm ci` in "
                "tests/oidc_provider (scripts/test.sh does it when npm is installed)")
    return None


def require_provider() -> None:
    """Skip (fail under CI=true) when the provider cannot run here."""
    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _wait_for_listening(process: subprocess.Popen[str]) -> str:
    """The issuer from the provider's "listening <issuer>" line; the rest of stdout is drained
    in the background so the provider never blocks on a full pipe."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise RuntimeError("the OpenID provider did not start in time") from None
        if line is None:
            raise RuntimeError(f"the OpenID provider exited with {process.wait()}")
        if line.startswith("listening "):
            return line.split(None, 1)[1].strip()


@contextmanager
def run_provider(directory: Path, redirect_uris: list[str], *,
                 accounts: list[dict[str, Any]] | None = None,
                 claims_in_id_token: bool = False, port: int = 0) -> Iterator[OidcProvider]:
    """Start tests/oidc_provider on 127.0.0.1 (a free port unless `port`), stop it after.

    `directory` holds the accounts file and the provider's log (stderr).
    """
    accounts_file = directory / "oidc-accounts.json"
    accounts_file.write_text(json.dumps(accounts or []))
    log_file = directory / "oidc-provider.log"
    env = {**os.environ, "PORT": str(port), "OIDC_CLIENT_ID": CLIENT_ID,
           "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_REDIRECT_URIS": " ".join(redirect_uris),
           "OIDC_ACCOUNTS_FILE": str(accounts_file),
           "OIDC_CLAIMS_IN_ID_TOKEN": "1" if claims_in_id_token else "0"}
    with open(log_file, "w") as log:
        process = subprocess.Popen(["node", "server.mjs"], cwd=PROVIDER_DIR, env=env,
                                   stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        issuer = _wait_for_listening(process)
        yield OidcProvider(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           accounts_file=accounts_file, process=process, log_file=log_file,
                           accounts=list(accounts or []))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session", name="oidc_provider")
def oidc_provider_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One provider per test session (per xdist worker) that accepts the Flask test client's
    callback URL; tests set its accounts with `set_accounts` / `add_account`."""
    require_provider()
    with run_provider(tmp_path_factory.mktemp("oidc"), [TEST_CLIENT_CALLBACK]) as provider:
        yield provider


# --- driving the provider's sign-in form without a browser ------------------------------------


class _Forms(HTMLParser):
    """The forms of a page (action, method, named inputs' values) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        elif tag == "form":
            self.forms.append({"action": values.get("action") or "",
                               "method": (values.get("method") or "get").lower(),
                               "fields": {}})
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value") or ""


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def links_of(html: str) -> list[str]:
    parser = _Forms()
    parser.feed(html)
    return parser.links


def sign_in_at_provider(authorization_url: str, login: str, *,
                        http: requests.Session | None = None, max_hops: int = 10,
                        cancel: bool = False) -> str:
    """Follow the provider from the authorization URL through its login form as `login`
    (or its Cancel link with `cancel`), redirect by redirect, as a browser would; returns the
    first URL outside the provider (keymint's callback with `code` and `state`, or with
    `error`)."""
    http = http or requests.Session()
    parts = urlsplit(authorization_url)
    provider = f"{parts.scheme}://{parts.netloc}/"
    url, submitted = authorization_url, False
    for _ in range(max_hops):
        if not url.startswith(provider):
            return url
        response = http.get(url, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            continue
        if cancel and not submitted:
            aborts = [link for link in links_of(response.text) if link.endswith("/abort")]
            assert aborts, f"no Cancel link at {url}"
            url, submitted = urljoin(url, aborts[0]), True
            continue
        login_forms = [f for f in forms_of(response.text) if "login" in f["fields"]]
        if submitted or not login_forms:
            raise AssertionError(f"no way on at {url}: {response.status_code} "
                                 f"{response.text[:300]}")
        form = login_forms[0]
        response = http.post(urljoin(url, form["action"]),
                             data={**form["fields"], "login": login, "password": "any"},
                             allow_redirects=False, timeout=10)
        if not response.is_redirect:
            raise AssertionError(f"login refused: {response.status_code} {response.text[:300]}")
        url, submitted = urljoin(url, response.headers["Location"]), True
    raise AssertionError("too many redirects at the provider")
