"""The console against hostile or malformed input, and the rules a security review found it
breaking: malformed CSRF tokens, Origin headers and `next` values answer 4xx (never a 500), a
sign-in link's token never reaches a log record, a member grants no scope the API would not
let them grant, and `next` cannot climb out of the console."""

from __future__ import annotations

import logging

from tests.console.support import csrf_from, make_link, sign_in
from tests.support import ORDERS, add_resource


def _owner(client, app, factory):
    email = factory.user()
    slug = factory.workspace(owner=email)
    sign_in(client, app, email)
    return email, slug


def test_non_ascii_csrf_token_is_refused_not_a_500(client):
    client.set_cookie("keymint_console_csrf", "abc", path="/console")
    response = client.post("/console/sign-out", data={"csrf_token": "\u00e9"})
    assert response.status_code == 400  # hmac.compare_digest raises TypeError on non-ASCII str


def test_malformed_origin_header_is_refused_not_a_500(client):
    response = client.post("/console/sign-out", data={"csrf_token": "x"},
                           headers={"Origin": "http://[::1"})
    assert response.status_code == 400  # urlsplit raises ValueError("Invalid IPv6 URL")


def test_malformed_next_is_ignored_not_a_500(client):
    response = client.get("/console/sign-in?next=//[x")
    assert response.status_code == 200  # is_safe_console_path calls urlsplit unguarded


def test_non_ascii_digit_expiry_is_a_field_error_not_a_500(client, app, factory):
    _, slug = _owner(client, app, factory)
    page = client.get(f"/console/w/{slug}/keys/new")
    response = client.post(f"/console/w/{slug}/keys/new",
                           data={"csrf_token": csrf_from(page), "name": "x",
                                 "expires": "\u00b2"})  # '²'.isdigit() is True, int('²') fails
    assert response.status_code == 400
    assert 'id="expires-error"' in response.get_data(as_text=True)


def test_sign_in_link_token_is_not_written_to_the_request_log(client, app, factory,
                                                                     caplog):
    email = factory.user()
    factory.workspace(owner=email)
    token = make_link(app, email)
    with caplog.at_level(logging.DEBUG):
        assert client.get(f"/console/sign-in/link/{token}").status_code == 200
    leaked = [r.getMessage() for r in caplog.records
              if token in r.getMessage() or token in str(getattr(r, "path", ""))]
    assert leaked == []  # the path *is* the credential (usable for 15 minutes)


def test_member_gets_no_scope_beyond_what_the_api_lets_them_grant(client, app, factory):
    """docs/console.md: 'a member can do in the console exactly what a member can do through
    /api/v1, no more'. Through the API a member grants only scopes their token holds: in the
    console, only scopes their own live keys hold."""
    add_resource(app, ORDERS, "orders:read orders:write")
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    member = factory.member(slug)
    factory.key(slug, member, scopes="introspect keys:read")  # what the member was given
    sign_in(client, app, member)
    page = client.get(f"/console/w/{slug}/keys/new")
    response = client.post(f"/console/w/{slug}/keys/new",
                           data={"csrf_token": csrf_from(page), "name": "x", "expires": "30",
                                 "scopes": ["orders:write"]})
    assert response.status_code == 403
    offered = page.get_data(as_text=True)
    assert 'value="introspect"' in offered and 'value="orders:write"' not in offered
    page = client.get(f"/console/w/{slug}/keys/new")
    created = client.post(f"/console/w/{slug}/keys/new",
                          data={"csrf_token": csrf_from(page), "name": "y", "expires": "30",
                                "scopes": ["introspect"]})
    assert created.status_code == 200 and "sk_" in created.get_data(as_text=True)


def test_next_with_dot_segments_does_not_leave_the_console(client, app, factory):
    email = factory.user()
    factory.workspace(owner=email)
    token = make_link(app, email)
    page = client.get(f"/console/sign-in/link/{token}")
    response = client.post(f"/console/sign-in/link/{token}?next=/console/../oauth/token",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert ".." not in response.headers["Location"]


def test_a_nul_in_a_slug_query_or_form_is_a_400_not_a_database_error(client, app, factory):
    _, slug = _owner(client, app, factory)
    assert client.get("/console/w/%00/keys").status_code == 400
    assert client.get(f"/console/w/{slug}/audit", query_string={"actor": "a\x00"}
                      ).status_code == 400
    page = client.get(f"/console/w/{slug}/keys/new")
    refused = client.post(f"/console/w/{slug}/keys/new",
                          data={"csrf_token": csrf_from(page), "name": "x\x00", "expires": "30"})
    assert refused.status_code == 400
    assert "NUL" in refused.get_data(as_text=True)
