"""Every admin page of the console in Chromium, as the workspace owner: it renders, axe finds
no serious or critical violation, and screenshots at desktop and mobile width are saved.

(The sign-in and key pages are checked the same way inside their journeys.) The markup does
not depend on the database, so these run on the SQLite server only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import Console, inspect_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = [  # (path under the workspace, the page's h1, screenshot name)
    ("members", "Members", "members"),
    ("policy", "Workspace policy", "policy"),
    ("audit", "Audit log", "audit"),
    ("legacy-keys", "Legacy keys", "legacy-keys"),
    ("webhooks", "Webhooks", "webhooks"),
]


@pytest.mark.parametrize("console", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("path", "heading", "name"), PAGES, ids=[p[0] for p in PAGES])
def test_admin_page_is_accessible(console: Console, signed_in: Any, path: str, heading: str,
                                  name: str) -> None:
    page = signed_in("owner")
    response = page.goto(console.page_url(path))
    assert response is not None and response.status == 200, page.url
    expect(page.get_by_role("heading", level=1, name=re.compile(heading, re.I))).to_be_visible()
    inspect_page(console, page, name, f"the {heading} page")
