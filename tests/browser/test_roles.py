"""What a member sees in Chromium: their own keys only, and the members page without its
admin actions (an admin, on the same pages, sees both: the checks can fail)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import Console, inspect_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN_ACTIONS = re.compile(r"^(Add member|Invite|Change role|Save role|Remove)", re.I)


def test_a_member_cannot_see_another_members_keys(console: Console, signed_in: Any) -> None:
    theirs = console.create_key(console.people["member2"], "max's deploy key")

    page = signed_in("member")
    page.goto(console.page_url("keys?state=all"))
    expect(page.get_by_role("heading", level=1)).to_have_text("My keys")
    assert "max's deploy key" not in page.content()
    assert theirs["client_id"] not in page.content()
    # Their key's page is the same 404 as a key that does not exist: nothing about it shows.
    response = page.goto(console.page_url(f"keys/{theirs['client_id']}"))
    assert response is not None and response.status == 404
    assert "max's deploy key" not in page.content()
    assert console.people["member2"] not in page.content()
    inspect_page(console, page, "error-not-found", "the 404 page")
    shown = page.locator("main").inner_text().replace(theirs["client_id"], "ID")
    unknown = "key_" + "x" * 24
    page.goto(console.page_url(f"keys/{unknown}"))
    assert page.locator("main").inner_text().replace(unknown, "ID") == shown

    admin = signed_in("admin")
    admin.goto(console.page_url("keys?state=all"))
    expect(admin.get_by_role("link", name="max's deploy key")).to_be_visible()
    expect(admin.get_by_role("cell", name=console.people["member2"]).first).to_be_visible()


def test_a_member_sees_no_admin_actions_on_the_members_page(console: Console,
                                                            signed_in: Any) -> None:
    admin = signed_in("admin")
    admin.goto(console.page_url("members"))
    expect(admin.get_by_role("button", name=ADMIN_ACTIONS).first).to_be_visible()

    page = signed_in("member")
    response = page.goto(console.page_url("members"))
    assert response is not None and response.status in (200, 403)
    if response.status == 200:
        expect(page.get_by_text(console.people["admin"]).first).to_be_visible()
    else:
        inspect_page(console, page, "error-forbidden", "the 403 page")
    expect(page.get_by_role("button", name=ADMIN_ACTIONS)).to_have_count(0)
    expect(page.get_by_role("link", name=ADMIN_ACTIONS)).to_have_count(0)
