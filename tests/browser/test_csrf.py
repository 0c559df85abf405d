"""Cross-site request forgery in Chromium: a form POST without keymint's CSRF token is
refused with the console's message, whether it comes from another origin or had its token
removed, and nothing is created."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import Console, inspect_page
from tests.support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REFUSED = "This form expired or did not come from keymint"


def _not_created(console: Console, page: Any, name: str) -> None:
    page.goto(console.page_url("keys"))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert name not in page.content()


def test_a_form_posted_from_another_origin_is_refused(console: Console,
                                                      signed_in: Any) -> None:
    page = signed_in("member")
    # Another origin on the same host (same site, so SameSite=Lax still sends the cookie:
    # the CSRF token is what stops it). The browser fetches it, Playwright answers it.
    attacker = f"http://127.0.0.1:{free_port()}/prize"
    target = html.escape(console.page_url("keys/new"))
    page.route(attacker, lambda route: route.fulfill(content_type="text/html", body=(
        "<!doctype html><html lang='en'><title>You won</title><main>"
        f"<form method='post' action='{target}'>"
        "<input type='hidden' name='name' value='planted by attacker'>"
        "<input type='hidden' name='scopes' value='keys:read'>"
        "<input type='hidden' name='expires_in_days' value='30'>"
        "<button>Claim your prize</button></form></main></html>")))
    page.goto(attacker)
    with page.expect_response(re.compile(r"/keys/new$")) as answer:
        page.get_by_role("button", name="Claim your prize").click()
    assert answer.value.status == 400
    expect(page.get_by_text(REFUSED)).to_be_visible()
    _not_created(console, page, "planted by attacker")


def test_a_form_whose_token_was_removed_is_refused(console: Console, signed_in: Any) -> None:
    page = signed_in("member")
    page.goto(console.page_url("keys/new"))
    page.get_by_label("Name", exact=True).fill("tokenless")
    removed = page.evaluate("""() => {
        const inputs = document.querySelectorAll('form input[name="csrf_token"]');
        inputs.forEach(input => input.remove());
        return inputs.length;
    }""")
    assert removed >= 1
    with page.expect_response(re.compile(r"/keys/new$")) as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.status == 400
    expect(page.get_by_text(REFUSED)).to_be_visible()
    inspect_page(console, page, "error-csrf", "the refused form's error page")
    _not_created(console, page, "tokenless")
