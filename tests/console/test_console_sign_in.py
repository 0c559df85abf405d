"""Console sign-in links and sessions: single use, 15 minutes, timeouts, sign-out, audit."""

from __future__ import annotations

import json
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import db
from app.models import AuditEvent, ConsoleLoginLink, ConsoleSession
from app.services import accounts, console_auth
from app.services.audit import Actor
from tests.console.support import csrf_from, make_link, sign_in

REFUSED = "This sign-in link is invalid, expired or already used"


def _person(factory):
    email = factory.user()
    slug = factory.workspace(owner=email)
    return email, slug


def _events(app, action):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                  .order_by(AuditEvent.id)).all()


def _pre_token(client, app, email):
    """A form token of a signed-out browser (from a link page: it holds a form)."""
    return csrf_from(client.get(f"/console/sign-in/link/{make_link(app, email)}"))


def _use(client, token, **kwargs):
    page = client.get(f"/console/sign-in/link/{token}", **kwargs)
    assert page.status_code == 200, page.status_code
    return client.post(f"/console/sign-in/link/{token}",
                       data={"csrf_token": csrf_from(page)}, **kwargs)


def _refused(response, client):
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/console/sign-in?refused=link")
    page = client.get(response.headers["Location"])
    assert REFUSED in page.get_data(as_text=True)


def test_a_link_signs_in_once_and_lands_on_the_keys_page(client, factory, app):
    email, slug = _person(factory)
    token = make_link(app, email)
    page = client.get(f"/console/sign-in/link/{token}")
    assert f"Continue as {email}" in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the URL holds the token
    # Showing the page consumed nothing: a link scanner's GET does not burn it.
    page = client.get(f"/console/sign-in/link/{token}")
    response = client.post(f"/console/sign-in/link/{token}",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    home = client.get(response.headers["Location"])
    assert home.status_code == 302 and home.headers["Location"].endswith(f"/console/w/{slug}/keys")
    keys = client.get(f"/console/w/{slug}/keys")
    assert keys.status_code == 200
    assert email in keys.get_data(as_text=True)
    # A second use, in another browser, is refused with the one message.
    other = app.test_client()
    _refused(other.get(f"/console/sign-in/link/{token}"), other)


def test_a_used_link_cannot_be_posted_again(client, factory, app):
    email, _ = _person(factory)
    token = make_link(app, email)
    page = client.get(f"/console/sign-in/link/{token}")
    form = {"csrf_token": csrf_from(page)}
    assert client.post(f"/console/sign-in/link/{token}", data=form).status_code == 303
    other = app.test_client()
    _refused(other.post(f"/console/sign-in/link/{token}",
                        data={"csrf_token": _pre_token(other, app, email)}), other)


def test_the_claim_is_conditional_so_a_parallel_use_loses(app, factory):
    """Two requests that both read the link as unused: only one UPDATE claims it."""
    email, _ = _person(factory)
    token = make_link(app, email)
    with app.app_context():
        from app import credentials

        link = db.session.scalar(select(ConsoleLoginLink).where(
            ConsoleLoginLink.token_digest == credentials.digest(token)))
        link_id, now = link.id, utcnow()
        db.session.commit()
        assert console_auth.claim_link(db.session, link_id, now) is True
        db.session.commit()
        assert console_auth.claim_link(db.session, link_id, now) is False
        db.session.rollback()


def test_a_link_expires_at_exactly_15_minutes(client, factory, app):
    email, _ = _person(factory)
    with freeze_time("2030-01-01T10:00:00Z"):
        token = make_link(app, email)
        late = make_link(app, email)
    with freeze_time("2030-01-01T10:14:59Z"):
        assert _use(client, token).status_code == 303  # one second before: still valid
    with freeze_time("2030-01-01T10:15:00Z"):
        other = app.test_client()
        _refused(other.get(f"/console/sign-in/link/{late}"), other)
        _refused(other.post(f"/console/sign-in/link/{late}",
                            data={"csrf_token": _pre_token(other, app, email)}), other)


def test_a_disabled_users_link_is_refused(client, factory, app):
    email, _ = _person(factory)
    token = make_link(app, email)
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        db.session.commit()
    _refused(client.get(f"/console/sign-in/link/{token}"), client)


def test_an_unknown_link_is_refused(client):
    _refused(client.get("/console/sign-in/link/not-a-real-token"), client)
    _refused(client.get("/console/sign-in/link/" + "x" * 300), client)


def test_link_creation_refuses_unknown_and_disabled_users(app, factory):
    import pytest

    from app.services.errors import InvalidInput, NotFound

    email, _ = _person(factory)
    with app.app_context():
        with pytest.raises(NotFound):
            console_auth.create_login_link(db.session, "nobody@example.com", Actor.cli())
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        with pytest.raises(InvalidInput, match="disabled"):
            console_auth.create_login_link(db.session, email, Actor.cli())
        db.session.rollback()


def test_sign_in_is_audited_with_ip_and_user_agent(client, factory, app):
    email, _ = _person(factory)
    token = make_link(app, email)
    [created] = _events(app, "console.login_link_created")
    assert (created.actor_type, created.actor_id, created.target_type) == ("system", "cli",
                                                                          "user")
    headers = {"User-Agent": "ConsoleTest/1.0"}
    page = client.get(f"/console/sign-in/link/{token}", headers=headers)
    client.post(f"/console/sign-in/link/{token}", data={"csrf_token": csrf_from(page)},
                headers=headers)
    [event] = _events(app, "console.signed_in")
    assert event.details == {"method": "link"}
    assert event.ip == "127.0.0.1" and event.user_agent == "ConsoleTest/1.0"
    assert event.actor_type == "user" and event.target_id == event.actor_id
    assert event.workspace_id is not None
    page = client.get("/console/sign-in", follow_redirects=True)
    client.post("/console/sign-out", data={"csrf_token": csrf_from(page)}, headers=headers)
    [out] = _events(app, "console.signed_out")
    assert out.ip == "127.0.0.1" and out.user_agent == "ConsoleTest/1.0"
    assert client.get("/console/").headers["Location"].endswith("/console/sign-in")


def test_signing_in_needs_a_workspace(client, factory, app):
    email = factory.user()
    token = make_link(app, email)
    response = _use(client, token)
    assert response.status_code == 403
    assert "not a member of any workspace" in response.get_data(as_text=True)
    assert client.get("/console/").headers["Location"].endswith("/console/sign-in")


def _session_row(app):
    with app.app_context():
        return db.session.scalars(select(ConsoleSession).order_by(ConsoleSession.id)).all()


def test_idle_timeout_at_exactly_one_hour(client, factory, app):
    email, slug = _person(factory)
    with freeze_time("2030-01-01T10:00:00Z") as frozen:
        sign_in(client, app, email)
        frozen.move_to("2030-01-01T10:59:59Z")
        assert client.get(f"/console/w/{slug}/keys").status_code == 200  # used: idle resets
        frozen.move_to("2030-01-01T11:59:58Z")  # one second short of an hour idle
        assert client.get(f"/console/w/{slug}/keys").status_code == 200
        frozen.move_to("2030-01-01T12:59:58Z")  # exactly one hour idle
        response = client.get(f"/console/w/{slug}/keys?state=all")
        assert response.status_code == 302
        assert response.headers["Location"].endswith(
            "/console/sign-in?next=/console/w/" + slug + "/keys?state%3Dall")


def test_last_seen_is_written_at_most_once_a_minute(client, factory, app):
    email, slug = _person(factory)
    with freeze_time("2030-01-01T10:00:00Z") as frozen:
        sign_in(client, app, email)
        frozen.move_to("2030-01-01T10:00:59Z")
        client.get(f"/console/w/{slug}/keys")
        [row] = _session_row(app)
        assert row.last_seen_at.isoformat() == "2030-01-01T10:00:00+00:00"
        frozen.move_to("2030-01-01T10:01:00Z")
        client.get(f"/console/w/{slug}/keys")
        [row] = _session_row(app)
        assert row.last_seen_at.isoformat() == "2030-01-01T10:01:00+00:00"


def test_absolute_timeout_at_exactly_twelve_hours(client, factory, app):
    email, slug = _person(factory)
    with freeze_time("2030-01-01T00:00:00Z") as frozen:
        sign_in(client, app, email)
        start = utcnow()
        for step in range(1, 15):  # in use every 50 minutes: never idle for an hour
            frozen.move_to(start + timedelta(minutes=50 * step))
            assert client.get(f"/console/w/{slug}/keys").status_code == 200
        frozen.move_to("2030-01-01T11:59:59Z")
        assert client.get(f"/console/w/{slug}/keys").status_code == 200
        frozen.move_to("2030-01-01T12:00:00Z")
        assert client.get(f"/console/w/{slug}/keys").status_code == 302


def test_sign_out_everywhere_ends_the_other_sessions(factory, app):
    email, slug = _person(factory)
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop, app, email)
    sign_in(phone, app, email)
    assert phone.get(f"/console/w/{slug}/keys").status_code == 200
    page = laptop.get(f"/console/w/{slug}/keys")
    response = laptop.post("/console/sign-out-everywhere", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert phone.get(f"/console/w/{slug}/keys").status_code == 302
    assert laptop.get(f"/console/w/{slug}/keys").status_code == 302
    [event] = _events(app, "console.signed_out_everywhere")
    assert event.details == {"sessions_ended": 2}
    assert all(row.ended_at is not None for row in _session_row(app))


def test_disabling_or_removing_a_person_ends_their_session_at_once(client, factory, app):
    email, slug = _person(factory)
    other = factory.member(slug)
    sign_in(client, app, email)
    second = app.test_client()
    sign_in(second, app, other)
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        workspace = accounts.get_workspace(db.session, slug)
        membership = accounts.get_membership(db.session, workspace,
                                             accounts.get_user_by_email(db.session, other))
        accounts.remove_member(db.session, membership, Actor.cli())
        db.session.commit()
    assert client.get(f"/console/w/{slug}/keys").status_code == 302
    assert second.get(f"/console/w/{slug}/keys").status_code == 302


def test_a_dead_session_cookie_is_cleared(client, factory, app):
    email, slug = _person(factory)
    with freeze_time("2030-01-01T00:00:00Z") as frozen:
        sign_in(client, app, email)
        frozen.move_to("2030-01-01T02:00:00Z")
        response = client.get(f"/console/w/{slug}/keys")
    cleared = [c for c in response.headers.getlist("Set-Cookie")
               if c.startswith("keymint_console=")]
    assert cleared and "Expires=Thu, 01 Jan 1970" in cleared[0]


def test_cli_login_link_prints_a_working_url(cli, client, factory, app):
    email, slug = _person(factory)
    result = cli("console", "login-link", email, "--base-url", "http://localhost")
    assert result.exit_code == 0, result.output
    url = result.stdout.strip().splitlines()[0]
    assert url.startswith("http://localhost/console/sign-in/link/")
    token = url.rsplit("/", 1)[1]
    assert _use(client, token).status_code == 303
    assert client.get(f"/console/w/{slug}/keys").status_code == 200


def test_cli_login_link_json_and_errors(cli, factory, app):
    email, _ = _person(factory)
    with freeze_time("2030-01-01T10:00:00Z"):
        result = cli("console", "login-link", email.upper(), "--json", "--base-url",
                     "https://keymint.example/")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["email"] == email and data["expires_at"] == "2030-01-01T10:15:00Z"
    assert data["url"].startswith("https://keymint.example/console/sign-in/link/")
    unknown = cli("console", "login-link", "nobody@example.com", "--base-url",
                  "https://keymint.example")
    assert unknown.exit_code == 1 and "no user with email nobody@example.com" in unknown.output
    no_base = cli("console", "login-link", email)
    assert no_base.exit_code == 2 and "KEYMINT_ISSUER" in no_base.output
    bad_base = cli("console", "login-link", email, "--base-url", "ftp://x")
    assert bad_base.exit_code == 2 and "--base-url" in bad_base.output
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        db.session.commit()
    disabled = cli("console", "login-link", email, "--base-url", "https://keymint.example")
    assert disabled.exit_code == 1 and "disabled" in disabled.output
    # Only the one successful link was made and audited.
    assert len(_events(app, "console.login_link_created")) == 1


def test_an_invited_person_may_sign_in_until_the_invitation_is_gone(client, factory, app):
    from app.services import invitations

    _, slug = _person(factory)
    guest = factory.user()
    with app.app_context():
        workspace = accounts.get_workspace(db.session, slug)
        invitation = invitations.invite(db.session, workspace, guest, "member", Actor.cli())
        public_id = invitation.public_id
        db.session.commit()
    assert _use(client, make_link(app, guest)).status_code == 303
    start = client.get("/console/")
    assert start.status_code in (200, 302)  # the invitations page, or "no workspace yet"
    with app.app_context():
        invitations.revoke(db.session, invitations.get_invitation(db.session, public_id),
                           Actor.cli())
        db.session.commit()
    # Neither a member nor invited any more: the session ends at once.
    assert client.get("/console/").headers["Location"].endswith("/console/sign-in")


def test_two_parallel_uses_of_one_link_sign_in_once(app, factory):
    """Both requests start together; the conditional UPDATE lets exactly one through."""
    import threading

    email, _ = _person(factory)
    token = make_link(app, email)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use() -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                console_auth.consume_login_link(db.session, token)
                db.session.commit()
                outcomes.append("signed in")
            except console_auth.SignInRefused:
                db.session.rollback()
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "signed in"]
