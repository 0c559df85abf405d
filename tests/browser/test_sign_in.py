"""Signing in and out in Chromium: by one-time link, by single sign-on, and a session ended
elsewhere sending the person back to the sign-in page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import Console, inspect_page, sign_in_by_link

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_signed_out_the_console_sends_you_to_sign_in(console: Console, page: Any) -> None:
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    expect(page.get_by_text("keymint console login-link").first).to_be_visible()
    inspect_page(console, page, "sign-in", "the sign-in page")


def test_a_sign_in_link_survives_prefetching_and_works_once(console: Console, page: Any,
                                                            new_context: Any) -> None:
    email = console.people["admin"]
    link = console.login_link(email)
    page.goto(link)
    page.reload()  # a link scanner's GET must not use the link up
    expect(page.get_by_role("button", name=re.compile("Continue", re.I))).to_be_visible()
    inspect_page(console, page, "sign-in-link", "the sign-in link page")
    page.get_by_role("button", name=re.compile("Continue", re.I)).click()
    expect(page).to_have_url(re.compile(r"/console/w/acme/keys"))
    expect(page.get_by_text(email).first).to_be_visible()

    # The same link on another device: refused, with a message, no session.
    other = new_context().new_page()
    other.goto(link)
    continue_ = other.get_by_role("button", name=re.compile("Continue", re.I))
    if continue_.count():
        continue_.click()
    expect(other).to_have_url(re.compile(r"/console/sign-in"))
    expect(other.get_by_text(re.compile(r"expired|already been used|no longer valid",
                                        re.I)).first).to_be_visible()
    other.goto("/console/w/acme/keys")
    expect(other).to_have_url(re.compile(r"/console/sign-in"))


def test_sign_in_by_single_sign_on(console: Console, page: Any) -> None:
    if console.sso is None:
        pytest.skip("the OpenID provider of tests/oidc_provider is not available here")
    email = console.people["owner"]
    page.goto("/console/sign-in")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    expect(page).to_have_url(re.compile("^" + re.escape(console.sso["issuer"])))
    console.sso["log_in"](page, email)
    expect(page).to_have_url(re.compile(r"/console/w/acme/keys"))
    expect(page.get_by_text(email).first).to_be_visible()


def test_a_session_ended_elsewhere_sends_you_back_to_sign_in(console: Console, page: Any,
                                                             new_context: Any) -> None:
    email = console.people["leaver"]
    sign_in_by_link(page, console, email)
    page.goto(console.page_url("keys/new"))

    laptop = new_context().new_page()
    sign_in_by_link(laptop, console, email)
    laptop.get_by_role("button", name="Sign out everywhere").click()
    expect(laptop).to_have_url(re.compile(r"/console/sign-in"))

    # The first device's session is over: the next page it asks for is the sign-in page,
    # which remembers where the person was going.
    page.reload()
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next=.*keys"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to keymint")
    assert email not in page.content()
