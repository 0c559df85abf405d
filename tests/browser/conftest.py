"""Browser-test fixtures: one Chromium per session, a real `keymint serve` per database with a
seeded team, a fresh browser context per test, pages signed in as each person of the team."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PEOPLE,
    SECRET_KEY,
    WORKSPACE,
    Console,
    browser_database,
    sign_in_by_link,
    skip_or_fail,
    unavailable,
)
from tests.support import IN_CI, PG_URL, ServerProcess, base_config, dispose

# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the browser tests of this worker (each test gets its own
    context). Package scope, not session: Playwright's sync API keeps its asyncio loop marked
    as running in this thread while it is started, so any later test that calls asyncio.run()
    (clients/python's ASGI tests) would fail; it stops once the worker leaves tests/browser."""
    reason = unavailable()
    if reason:
        skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --- the server and its data -----------------------------------------------------------------


def _sso_settings(server: ServerProcess, workdir: Path,
                  stack: ExitStack) -> dict[str, Any] | None:
    """Start the OpenID provider of tests/oidc_provider for `server` (every person of the
    team has a verified account there, login name = email); the settings that point keymint
    at it, and how to sign in at its form. None when node or its node_modules are missing
    (the SSO journey then skips; under CI=true that fails instead)."""
    from tests.console.oidc_support import run_provider, unavailable_reason

    reason = unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but the SSO journey cannot run: {reason}")
        return None
    provider = stack.enter_context(run_provider(
        workdir, [f"{server.url}/console/sign-in/sso/callback"],
        accounts=[{"email": email, "email_verified": True} for email in PEOPLE.values()]))
    # Killed, not asked to stop: a graceful stop would wait out Chromium's keep-alive
    # connections (10 s) at the end of every session.
    stack.callback(provider.process.kill)

    def log_in(page: Any, email: str) -> None:
        page.locator("input[name=login]").fill(email)
        page.locator("input[name=password]").fill("any password")
        page.locator("button[type=submit]").click()

    return {"issuer": provider.issuer, "env": provider.settings(), "log_in": log_in}


@pytest.fixture(scope="package")
def consoles(chromium: Any, sqlite_template: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Console]]:
    """get(backend) -> the running console on that database, started on first use and kept
    while this worker runs tests/browser (xdist hands each worker its share of a package's
    tests in order): at most one server per database, however the backends interleave.

    Depends on `chromium` so that a machine without a browser skips before starting servers."""
    started: dict[str, Console] = {}
    with ExitStack() as stack:

        def get(backend: str) -> Console:
            if backend not in started:
                started[backend] = _start_console(backend, sqlite_template, tmp_path_factory,
                                                  stack)
            return started[backend]

        yield get


@pytest.fixture(params=["sqlite", "postgres"])
def console(request: pytest.FixtureRequest, consoles: Callable[[str], Console]) -> Console:
    """The real `keymint serve` with the console this test runs against, on each database;
    shared by the browser tests (each makes its own keys; the people are seeded once)."""
    if request.param == "postgres" and not PG_URL:
        pytest.skip("PostgreSQL tests need KEYMINT_TEST_DATABASE_URL (set by .ci/run)")
    return consoles(request.param)


def _start_console(backend: str, sqlite_template: Path,
                   tmp_path_factory: pytest.TempPathFactory, stack: ExitStack) -> Console:
    """Migrate a database, seed it through the CLI, start the OpenID provider (when it can
    run here) and `keymint serve`; `stack` undoes it all."""
    from app import create_app

    database_url = stack.enter_context(browser_database(
        backend, sqlite_template, tmp_path_factory.mktemp("browser")))
    server = ServerProcess(database_url, env={"KEYMINT_SECRET_KEY": SECRET_KEY})
    server.env["KEYMINT_ISSUER"] = server.url  # sign-in links point at this server
    sso = _sso_settings(server, tmp_path_factory.mktemp("oidc"), stack)
    if sso:
        server.env.update(sso["env"])
    app = create_app(base_config(database_url, KEYMINT_SECRET_KEY=SECRET_KEY))
    stack.callback(dispose, app)
    console = Console(server=server, database_url=database_url, backend=backend,
                      env=dict(server.env), app=app, sso=sso)
    _seed(console, tmp_path_factory.mktemp("seed"))
    stack.callback(server.stop, 9)  # SIGKILL: see the provider above; nothing to flush
    server.start()
    return console


def _seed(console: Console, workdir: Path) -> None:
    """The team (an owner, an admin, two members and one who signs out everywhere), a key of
    each member, and an imported legacy key, so the legacy page has something to show."""
    people = console.people
    for email in people.values():
        console.cli("users", "create", email)
    console.cli("workspaces", "create", WORKSPACE, "--owner", people["owner"])
    for role, email in people.items():
        if role != "owner":
            console.cli("members", "add", WORKSPACE, email, "--role",
                        "admin" if role == "admin" else "member")
    # A member grants only scopes one of their own live keys holds (as through the API): an
    # operator's key with `introspect` lets the members' new keys have a scope to pick.
    for role in ("member", "member2"):
        console.create_key(people[role], "laptop script", scopes="introspect")
    legacy = workdir / "legacy.csv"
    legacy.write_text(f"workspace,key,label\n{WORKSPACE},legacy-0123456789abcdef,nightly export\n")
    console.cli("legacy", "import", str(legacy))


# --- per test: a fresh context, signing in, screenshots, axe ---------------------------------


@pytest.fixture
def context(chromium: Any, console: Console) -> Iterator[Any]:
    """A fresh browser context (no cookies) at desktop size, closed after the test."""
    ctx = chromium.new_context(viewport=DESKTOP, base_url=console.url)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@pytest.fixture
def new_context(chromium: Any, console: Console) -> Iterator[Callable[..., Any]]:
    """make(**options): a further fresh context (a second device, JavaScript off, ...)."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        ctx = chromium.new_context(**{"viewport": DESKTOP, "base_url": console.url, **options})
        ctx.set_default_timeout(10_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def signed_in(console: Console, new_context: Callable[..., Any]) -> Callable[..., Any]:
    """as_(role) -> a page in a fresh context signed in as that person of the team.

    The first call per person signs in by link (the login-link command run in this process:
    the sign-in journeys run the real executable); later tests reuse that console session
    (the browser's storage state), as a person's browser would."""

    def as_(role: str, **options: Any) -> Any:
        email = console.people[role]
        if email not in console.signed_in:
            first = new_context()
            first_page = first.new_page()
            sign_in_by_link(first_page, console, email, executable=False)
            console.signed_in[email] = first.storage_state()
            first.close()
        ctx = new_context(storage_state=console.signed_in[email], **options)
        return ctx.new_page()

    return as_


