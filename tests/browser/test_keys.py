"""Key journeys in Chromium: create (secret shown once, then gone), use the secret at
/oauth/token, rotate with a grace period, revoke, JavaScript off, keyboard only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser.support import (
    SECRET,
    Console,
        create_key_in_ui,
    inspect_page,
    secret_on,
    sign_in_by_link,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _token_works(console: Console, client_id: str, secret: str) -> bool:
    response = console.token(client_id, secret)
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert response.json()["error"] == "invalid_client"
    return response.status_code == 200


def test_create_a_key_use_its_secret_and_find_it_gone_on_reload(console: Console,
                                                               signed_in: Any) -> None:
    page = signed_in("member", permissions=["clipboard-read", "clipboard-write"])
    page.goto(console.page_url("keys/new"))
    inspect_page(console, page, "new-key", "the new-key form")

    created = create_key_in_ui(page, console, "billing worker")
    assert "no-store" in created.headers["cache-control"]
    expect(page.get_by_text(re.compile("will not be shown again", re.I)).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"curl .*/oauth/token", re.S)).first).to_be_visible()
    inspect_page(console, page, "key-result", "the new key's result page")
    # The copy button (the console's one script) puts exactly the secret on the clipboard.
    page.get_by_role("button", name="Copy secret").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == created.secret

    # The secret the page showed is the key's credential.
    token = console.token(created.client_id, created.secret)
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer"

    # Nowhere to be seen again: not on the key's page, not after a reload, not in the list,
    # and Back does not bring it back (Chromium keeps no copy of a no-store POST answer and
    # will not resend the form on its own).
    page.goto(console.page_url(f"keys/{created.client_id}"))
    with pytest.raises(PlaywrightError, match="ERR_CACHE_MISS"):
        page.go_back()
    page.wait_for_url(re.compile("^chrome-error://"))
    assert created.secret not in page.content()
    page.goto(console.page_url(f"keys/{created.client_id}"))
    page.reload()
    expect(page.get_by_role("heading", name=re.compile("billing worker"))).to_be_visible()
    assert created.secret not in page.content()
    assert not SECRET.search(page.content())
    inspect_page(console, page, "key-detail", "the key's detail page")
    page.goto(console.page_url("keys"))
    expect(page.get_by_role("link", name="billing worker").first).to_be_visible()
    assert created.secret not in page.content()
    inspect_page(console, page, "keys", "My keys")


def test_rotate_with_grace_keeps_both_secrets_and_grace_zero_ends_the_old(
        console: Console, signed_in: Any) -> None:
    page = signed_in("member")
    first = create_key_in_ui(page, console, "rotating worker")

    page.goto(console.page_url(f"keys/{first.client_id}"))
    page.get_by_label("Grace period (seconds)").fill("3600")
    page.get_by_role("button", name="Rotate secret").click()
    second = secret_on(page)
    assert second != first.secret
    inspect_page(console, page, "rotate-result", "the rotation's result page")
    assert _token_works(console, first.client_id, first.secret)  # within its grace period
    assert _token_works(console, first.client_id, second)

    page.goto(console.page_url(f"keys/{first.client_id}"))
    page.get_by_label("Grace period (seconds)").fill("0")
    page.get_by_role("button", name="Rotate secret").click()
    third = secret_on(page)
    assert not _token_works(console, first.client_id, first.secret)
    assert not _token_works(console, first.client_id, second)
    assert _token_works(console, first.client_id, third)


def test_revoke_after_confirmation_stops_token_requests(console: Console,
                                                        signed_in: Any) -> None:
    page = signed_in("member")
    created = create_key_in_ui(page, console, "doomed worker")
    assert _token_works(console, created.client_id, created.secret)

    page.goto(console.page_url(f"keys/{created.client_id}"))
    page.get_by_role("link", name="Revoke key").or_(
        page.get_by_role("button", name="Revoke key")).first.click()
    expect(page).to_have_url(re.compile(rf"/keys/{created.client_id}/revoke$"))
    assert _token_works(console, created.client_id, created.secret)  # asking is not revoking
    inspect_page(console, page, "revoke-confirm", "the revoke confirmation")
    page.get_by_role("button", name="Revoke key").click()

    expect(page.get_by_text(re.compile("revoked", re.I)).first).to_be_visible()
    response = console.token(created.client_id, created.secret)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_with_javascript_off_signing_in_and_creating_a_key_still_work(
        console: Console, new_context: Any) -> None:
    page = new_context(java_script_enabled=False).new_page()
    sign_in_by_link(page, console, console.people["member"], executable=False)
    created = create_key_in_ui(page, console, "no-js worker")
    assert _token_works(console, created.client_id, created.secret)
    # Without the script the copy button stays hidden; the secret is there to select.
    expect(page.get_by_role("button", name="Copy secret")).to_be_hidden()
    expect(page.locator("#secret")).to_have_text(created.secret)


def test_keyboard_alone_reaches_the_form_with_a_visible_focus_ring(console: Console,
                                                                 signed_in: Any) -> None:
    page = signed_in("member")
    page.goto(console.page_url("keys/new"))
    name = page.get_by_label("Name", exact=True)
    for _ in range(60):
        page.keyboard.press("Tab")
        if name.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("60 presses of Tab never reached the Name field of the new-key form")
    ring = name.evaluate("""element => {
        const style = getComputedStyle(element);
        return {outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
                shadow: style.boxShadow};
    }""")
    assert (ring["outline"] != "none" and ring["width"] >= 2) or ring["shadow"] != "none", ring
    inspect_page(console, page, "keyboard-focus", "the new-key form focused by keyboard")

    page.keyboard.type("typed worker")
    page.keyboard.press("Enter")  # submits the form: defaults for everything else
    expect(page.get_by_text(re.compile("will not be shown again", re.I)).first).to_be_visible()
    assert SECRET.search(page.content())
