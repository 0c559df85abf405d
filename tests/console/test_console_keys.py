"""Console key pages: list, create (secret once), detail, rotate with grace, revoke, tokens."""

from __future__ import annotations

import re

from freezegun import freeze_time
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent
from tests.console.support import csrf_from, sign_in
from tests.support import KeyHandle, mint, token_response

SECRET = re.compile(r'<code id="secret">(sk_[0-9A-Za-z]+)</code>')
CLIENT_ID = re.compile(r'<code id="client-id">(key_[0-9A-Za-z]+)</code>')


def _signed_in(client, app, factory, role="owner", slug=None):
    if slug is None:
        email = factory.user()
        slug = factory.workspace(owner=email)
    else:
        email = factory.member(slug, role=role)
    sign_in(client, app, email)
    return email, slug


def _create(client, slug, **form):
    page = client.get(f"/console/w/{slug}/keys/new")
    data = {"csrf_token": csrf_from(page), "name": "billing", "expires": "30", **form}
    return client.post(f"/console/w/{slug}/keys/new", data=data)


def _created(response, email, slug) -> KeyHandle:
    body = response.get_data(as_text=True)
    return KeyHandle(CLIENT_ID.search(body).group(1), SECRET.search(body).group(1), slug, email)


def _events(app, action, target):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.target_id == target)).all()


def test_create_key_shows_the_secret_once_and_it_works(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    form = client.get(f"/console/w/{slug}/keys/new").get_data(as_text=True)
    assert 'value="30" checked' in form  # a default expiry: Enter in Name submits
    assert 'for="name">Name</label>' in form and "<legend>Scopes</legend>" in form
    response = _create(client, slug, scopes=["introspect", "keys:read"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert "It will not be shown again" in body and "Copy secret" in body
    assert "http://localhost/oauth/token" in body and "read -rs KEYMINT_CLIENT_SECRET" in body
    assert "copy.js" in body
    key = _created(response, email, slug)
    assert mint(client, key)  # the shown secret gets a token from /oauth/token
    # The key page never shows it again.
    detail = client.get(f"/console/w/{slug}/keys/{key.client_id}").get_data(as_text=True)
    assert key.secret not in detail and "billing" in detail
    listing = client.get(f"/console/w/{slug}/keys").get_data(as_text=True)
    assert key.client_id in listing and key.secret not in listing
    [event] = _events(app, "key.created", key.client_id)
    assert event.actor_type == "user" and event.ip == "127.0.0.1"


def test_create_key_errors_are_shown_next_to_the_field(client, app, factory):
    _, slug = _signed_in(client, app, factory)
    response = _create(client, slug, name="   ")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="name-error"' in body and 'aria-invalid="true"' in body
    custom = _create(client, slug, expires="custom", expires_on="2999-01-01")
    assert custom.status_code == 400
    assert 'id="expires-error"' in custom.get_data(as_text=True)
    assert "maximum key lifetime" in custom.get_data(as_text=True)
    garbage = _create(client, slug, expires="custom", expires_on="soon")
    assert garbage.status_code == 400 and "YYYY-MM-DD" in garbage.get_data(as_text=True)


def test_expiry_presets_follow_the_workspace_policy(client, app, factory):
    email = factory.user()
    slug = factory.workspace(owner=email, max_key_lifetime_days=20)
    sign_in(client, app, email)
    form = client.get(f"/console/w/{slug}/keys/new").get_data(as_text=True)
    assert 'value="7"' in form and 'value="20" checked' in form
    assert 'value="30"' not in form and 'value="90"' not in form
    assert _create(client, slug, expires="90").status_code == 400


def test_member_cannot_grant_management_scopes(client, app, factory):
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    email, _ = _signed_in(client, app, factory, role="member", slug=slug)
    # what the operator gave them: a member grants what their own keys hold, never management
    factory.key(slug=slug, email=email, scopes="introspect keys:write")
    form = client.get(f"/console/w/{slug}/keys/new").get_data(as_text=True)
    assert 'value="introspect"' in form and 'value="keys:write"' not in form
    response = _create(client, slug, scopes=["keys:write"])
    assert response.status_code == 403
    assert "only admins and owners can give a key management scopes" in \
        response.get_data(as_text=True).lower()
    assert response.mimetype == "text/html"


def test_member_sees_only_their_keys_and_gets_404_for_others(client, app, factory):
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    other = factory.key(slug=slug, name="someone-elses")
    email, _ = _signed_in(client, app, factory, role="member", slug=slug)
    mine = factory.key(slug=slug, email=email, name="mine")
    listing = client.get(f"/console/w/{slug}/keys")
    body = listing.get_data(as_text=True)
    assert "<h1>My keys</h1>" in body
    assert mine.client_id in body and other.client_id not in body
    assert ">Owner<" not in body
    for path in ("", "/revoke"):
        response = client.get(f"/console/w/{slug}/keys/{other.client_id}{path}")
        assert response.status_code == 404 and response.mimetype == "text/html"
    token = csrf_from(client.get(f"/console/w/{slug}/keys"))
    for path in ("/revoke", "/rotate", "/tokens/revoke"):
        response = client.post(f"/console/w/{slug}/keys/{other.client_id}{path}",
                               data={"csrf_token": token, "grace_period": "0"})
        assert response.status_code == 404, path
    assert mint(client, other)  # untouched


def test_admin_sees_every_key_with_owner_and_can_revoke_but_not_rotate_others(client, app,
                                                                             factory):
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    other = factory.key(slug=slug, name="someone-elses")
    _signed_in(client, app, factory, role="admin", slug=slug)
    body = client.get(f"/console/w/{slug}/keys").get_data(as_text=True)
    assert "<h1>Keys</h1>" in body and other.workspace and other.client_id in body
    assert ">Owner<" in body and other.client_id in body
    detail = client.get(f"/console/w/{slug}/keys/{other.client_id}").get_data(as_text=True)
    assert "Only the key's owner can rotate its secret" in detail
    token = csrf_from(client.get(f"/console/w/{slug}/keys"))
    rotate = client.post(f"/console/w/{slug}/keys/{other.client_id}/rotate",
                         data={"csrf_token": token, "grace_period": "0"})
    assert rotate.status_code == 403
    assert "only the key&#39;s owner can rotate" in rotate.get_data(as_text=True).lower()


def test_non_member_gets_404_for_the_workspace(client, app, factory):
    _signed_in(client, app, factory)
    stranger_ws = factory.workspace()
    response = client.get(f"/console/w/{stranger_ws}/keys")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert client.get("/console/w/no-such-ws/keys").status_code == 404


def test_state_filter(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    with freeze_time("2020-01-01T00:00:00Z"):
        expired = factory.key(slug=slug, email=email, name="old", expires_in_days=1)
    live = factory.key(slug=slug, email=email, name="live")
    active = client.get(f"/console/w/{slug}/keys").get_data(as_text=True)
    assert live.client_id in active and expired.client_id not in active
    everything = client.get(f"/console/w/{slug}/keys?state=all").get_data(as_text=True)
    assert live.client_id in everything and expired.client_id in everything
    assert "expired</span>" in everything
    assert client.get(f"/console/w/{slug}/keys?state=bogus").status_code == 400


def test_expiry_badge_within_seven_days(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    factory.key(slug=slug, email=email, name="soon", expires_in_days=3)
    body = client.get(f"/console/w/{slug}/keys").get_data(as_text=True)
    assert "expires in 3 days" in body


def test_rotate_with_grace_both_secrets_work_until_the_grace_ends(client, app, factory):
    with freeze_time("2030-01-01T00:00:00Z") as frozen:
        email, slug = _signed_in(client, app, factory)
        old = _created(_create(client, slug, scopes=["introspect"]), email, slug)
        page = client.get(f"/console/w/{slug}/keys/{old.client_id}")
        assert "Grace period (seconds)" in page.get_data(as_text=True)
        response = client.post(f"/console/w/{slug}/keys/{old.client_id}/rotate",
                               data={"csrf_token": csrf_from(page), "grace_period": "600"})
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        new = _created(response, email, slug)
        assert new.secret != old.secret
        assert "2030-01-01 00:10:00 UTC" in response.get_data(as_text=True)
        frozen.move_to("2030-01-01T00:09:59Z")
        assert mint(client, old) and mint(client, new)
        frozen.move_to("2030-01-01T00:10:00Z")
        assert token_response(client, old).status_code == 401
        assert mint(client, new)
    [event] = _events(app, "key.secret_rotated", old.client_id)
    assert event.details["grace_period"] == 600


def test_rotate_refuses_a_bad_grace_period_next_to_the_field(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    key = factory.key(slug=slug, email=email)
    page = client.get(f"/console/w/{slug}/keys/{key.client_id}")
    for value in ("abc", "-1", "9999999"):
        response = client.post(f"/console/w/{slug}/keys/{key.client_id}/rotate",
                               data={"csrf_token": csrf_from(page), "grace_period": value})
        assert response.status_code == 400, value
        assert 'id="grace_period-error"' in response.get_data(as_text=True)
    assert mint(client, key)  # nothing rotated


def test_revoke_with_confirmation_then_token_requests_fail(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    key = factory.key(slug=slug, email=email, scopes="introspect")
    token = mint(client, key)
    confirm = client.get(f"/console/w/{slug}/keys/{key.client_id}/revoke")
    assert confirm.status_code == 200
    assert "Revoke key</button>" in confirm.get_data(as_text=True)
    response = client.post(f"/console/w/{slug}/keys/{key.client_id}/revoke",
                           data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The key is revoked." in page and "state-revoked" in page
    refused = token_response(client, key)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"
    other = factory.key(scopes="introspect")
    assert client.post("/oauth/introspect", data={"token": token},
                       auth=other.auth).get_json() == {"active": False}
    [event] = _events(app, "key.revoked", key.client_id)
    assert event.actor_type == "user" and event.ip == "127.0.0.1"


def test_list_and_revoke_tokens_one_and_all(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    key = factory.key(slug=slug, email=email, scopes="introspect")
    first, second, third = mint(client, key), mint(client, key), mint(client, key)
    page = client.get(f"/console/w/{slug}/keys/{key.client_id}")
    body = page.get_data(as_text=True)
    jtis = re.findall(r"<td><code>(tok_[0-9A-Za-z]+)</code></td>", body)
    assert len(jtis) == 3 and first not in body
    one = client.post(f"/console/w/{slug}/keys/{key.client_id}/tokens/{jtis[0]}/revoke",
                      data={"csrf_token": csrf_from(page)})
    assert one.status_code == 303
    body = client.get(one.headers["Location"]).get_data(as_text=True)
    assert len(re.findall(r"<td><code>(tok_[0-9A-Za-z]+)</code></td>", body)) == 2
    unknown = client.post(f"/console/w/{slug}/keys/{key.client_id}/tokens/tok_nope/revoke",
                          data={"csrf_token": csrf_from(page)})
    assert unknown.status_code == 404
    everything = client.post(f"/console/w/{slug}/keys/{key.client_id}/tokens/revoke",
                             data={"csrf_token": csrf_from(page)})
    assert everything.status_code == 303
    body = client.get(everything.headers["Location"]).get_data(as_text=True)
    assert "No active tokens." in body
    assert "key.tokens_revoked" in body  # the key's recent events
    assert f"<td>{email}</td>" in body  # the actor by email, not by id
    checker = factory.key(scopes="introspect")
    for token in (first, second, third):
        assert client.post("/oauth/introspect", data={"token": token},
                           auth=checker.auth).get_json() == {"active": False}
    assert mint(client, key)  # the key itself still works


def test_a_workspace_without_a_maximum_offers_keys_that_never_expire(client, app, factory):
    email = factory.user()
    slug = factory.workspace(owner=email, max_key_lifetime_days=None)
    sign_in(client, app, email)
    form = client.get(f"/console/w/{slug}/keys/new").get_data(as_text=True)
    assert 'value="never"' in form and "at most" not in form
    response = _create(client, slug, expires="never")
    assert response.status_code == 200
    key = _created(response, email, slug)
    detail = client.get(f"/console/w/{slug}/keys/{key.client_id}").get_data(as_text=True)
    assert "<dt>Expires</dt><dd>never</dd>" in detail.replace("\n", "")


def test_workspace_switcher_and_key_page_headers(client, app, factory):
    email, slug = _signed_in(client, app, factory)
    second = factory.workspace(owner=email)
    page = client.get(f"/console/w/{slug}/keys")
    assert f'<option value="{second}"' in page.get_data(as_text=True)
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    switched = client.get(f"/console/switch?workspace={second}")
    assert switched.status_code == 302
    assert switched.headers["Location"].endswith(f"/console/w/{second}/keys")
    assert client.get(f"/console/switch?workspace={factory.workspace()}").status_code == 404
