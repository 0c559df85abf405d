"""Invitations: POST /api/v1/members invites, only the invitee accepts, expiry and revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from app.clock import parse_rfc3339
from tests.support import audit_events, bearer, make_team, mint, user_id

INVITATION_FIELDS = {"id", "workspace", "email", "role", "status", "expires_at", "created_at"}


def invite(client, person, email, role="member"):
    return client.post("/api/v1/members", headers=person.headers,
                       json={"email": email, "role": role})


def accept(client, headers, invitation_id):
    return client.post(f"/api/v1/invitations/{invitation_id}/accept", headers=headers)


def member_emails(client, team):
    members = client.get("/api/v1/members", headers=team["owner"].headers).get_json()["members"]
    return {m["email"]: m["role"] for m in members}


def disable(app, email):
    from app.extensions import db
    from app.services import accounts
    from app.services.audit import Actor

    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        db.session.commit()


@pytest.mark.parametrize("who", ["unknown", "active user", "disabled user",
                                 "owner of another workspace"])
def test_invite_answers_the_same_whatever_the_email(client, factory, app, who):
    """Issue #15 §4: POST /members answered 404 for an unknown email, 400 for a disabled user
    and 201 for another tenant's owner, who became a member without consent. Now every email
    gets the same 202 and a pending invitation; nobody becomes a member by being added."""
    team = make_team(client, factory)
    if who == "unknown":
        email = "nobody-here@example.com"
    elif who == "active user":
        email = factory.user()
    elif who == "disabled user":
        email = factory.user()
        disable(app, email)
    else:
        email = make_team(client, factory)["owner"].email
    added_before = len(audit_events(app, "member.added"))
    r = invite(client, team["admin"], email.upper())
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert set(body) == INVITATION_FIELDS
    assert body["id"].startswith("inv_") and body["workspace"] == team.slug
    assert (body["email"], body["role"], body["status"]) == (email, "member", "pending")
    created = parse_rfc3339(body["created_at"])
    assert parse_rfc3339(body["expires_at"]) == created + timedelta(days=7)
    assert r.headers["Location"] == f"/api/v1/invitations/{body['id']}"
    assert email not in member_emails(client, team)
    [event] = audit_events(app, "invitation.created")
    assert (event.target_type, event.target_id) == ("invitation", body["id"])
    assert (event.actor_id, event.actor_key) == (team["admin"].user_id,
                                                 team["admin"].key.client_id)
    assert event.details == {"email": email, "role": "member"}
    assert len(audit_events(app, "member.added")) == added_before


def test_another_tenants_owner_joins_only_by_accepting(client, factory, app):
    team, other = make_team(client, factory), make_team(client, factory)
    stranger = other["owner"]
    invitation = invite(client, team["owner"], stranger.email, role="admin").get_json()
    # Their token belongs to their own workspace: it reads nothing here before accepting.
    assert client.get(f"/api/v1/invitations/{invitation['id']}",
                      headers=stranger.headers).get_json()["status"] == "pending"
    r = accept(client, stranger.headers, invitation["id"])
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "accepted" and r.get_json()["role"] == "admin"
    assert member_emails(client, team)[stranger.email] == "admin"
    [accepted] = audit_events(app, "invitation.accepted")
    assert accepted.workspace_id is not None and accepted.target_id == invitation["id"]
    # The key that accepted belongs to another workspace: it does not show in this trail.
    assert (accepted.actor_id, accepted.actor_key) == (stranger.user_id, None)
    [added] = [e for e in audit_events(app, "member.added")
               if e.target_id == stranger.user_id and e.workspace_id == accepted.workspace_id]
    assert added.details == {"role": "admin", "invitation": invitation["id"]}
    # Accepting again: 409; the invitation is no longer listed as pending.
    r = accept(client, stranger.headers, invitation["id"])
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"
    listed = client.get("/api/v1/invitations", headers=team["owner"].headers).get_json()
    assert listed == {"invitations": []}


def test_only_the_invitee_can_see_or_accept(client, factory):
    team, other = make_team(client, factory), make_team(client, factory)
    invitation = invite(client, team["owner"], factory.user()).get_json()
    path = f"/api/v1/invitations/{invitation['id']}"
    for person in (other["owner"], team["member"]):  # a stranger; a member of the workspace
        r = accept(client, person.headers, invitation["id"])
        assert r.status_code == 404 and r.get_json()["error"] == "not_found"
        assert client.get(path, headers=person.headers).status_code == 404
    assert client.get(path, headers=team["admin"].headers).status_code == 200
    for bad in ("inv_" + "x" * 24, "inv_nope", "1", "inv_" + "é" * 24):
        assert accept(client, other["owner"].headers, bad).status_code == 404
    assert client.post(f"{path}/accept").status_code == 401


def test_an_existing_member_or_a_second_pending_invitation_is_a_conflict(client, factory):
    team = make_team(client, factory)
    r = invite(client, team["owner"], team["member"].email)
    assert r.status_code == 409 and r.get_json()["field"] == "email"
    email = factory.user()
    assert invite(client, team["owner"], email).status_code == 202
    r = invite(client, team["owner"], email, role="admin")
    assert r.status_code == 409 and r.get_json()["field"] == "email"


def test_invitation_expires_after_exactly_seven_days(client, factory, app):
    with freeze_time("2030-01-01T00:00:00Z"):
        team = make_team(client, factory)
        early, late = factory.user(), factory.user()
        early_key = factory.key(factory.workspace(owner=early), early)
        late_key = factory.key(factory.workspace(owner=late), late)
        first = invite(client, team["owner"], early).get_json()
        second = invite(client, team["owner"], late).get_json()
        assert first["expires_at"] == "2030-01-08T00:00:00Z"
    with freeze_time("2030-01-07T23:59:59.999999Z"):
        assert accept(client, bearer(mint(client, early_key)), first["id"]).status_code == 200
    with freeze_time("2030-01-08T00:00:00Z"):
        owner_headers = bearer(mint(client, team["owner"].key))
        assert client.get("/api/v1/invitations", headers=owner_headers).get_json() == {
            "invitations": []}
        r = accept(client, bearer(mint(client, late_key)), second["id"])
        assert r.status_code == 410 and r.get_json()["error"] == "gone"
        assert "expired" in r.get_json()["error_description"]
        r = client.get(f"/api/v1/invitations/{second['id']}", headers=owner_headers)
        assert r.get_json()["status"] == "expired"
        # An expired invitation no longer blocks a new one for the same address.
        r = client.post("/api/v1/members", headers=owner_headers, json={"email": late})
        assert r.status_code == 202
    assert late not in member_emails(client, team)
    assert [e.target_id for e in audit_events(app, "invitation.accepted")] == [first["id"]]


@pytest.mark.parametrize(("role", "invited_role", "status"), [
    ("member", "member", 403), ("admin", "member", 204), ("admin", "admin", 403),
    ("owner", "admin", 204), ("owner", "owner", 204)])
def test_who_may_revoke(client, factory, app, role, invited_role, status):
    team = make_team(client, factory)
    email = factory.user()
    invitation = invite(client, team["owner"], email, role=invited_role).get_json()
    r = client.delete(f"/api/v1/invitations/{invitation['id']}", headers=team[role].headers)
    assert r.status_code == status
    if status == 204:
        [event] = audit_events(app, "invitation.revoked")
        assert event.target_id == invitation["id"] and event.actor_id == team[role].user_id
        key = factory.key(factory.workspace(owner=email), email)
        r = accept(client, bearer(mint(client, key)), invitation["id"])
        assert r.status_code == 410 and "revoked" in r.get_json()["error_description"]
        # Revoking again changes nothing.
        assert client.delete(f"/api/v1/invitations/{invitation['id']}",
                             headers=team[role].headers).status_code == 204
        assert len(audit_events(app, "invitation.revoked")) == 1


def test_revoke_is_confined_to_the_workspace_and_to_unaccepted_invitations(client, factory):
    team, other = make_team(client, factory), make_team(client, factory)
    invitee = other["owner"]
    invitation = invite(client, team["owner"], invitee.email).get_json()
    path = f"/api/v1/invitations/{invitation['id']}"
    assert client.delete(path, headers=other["owner"].headers).status_code == 404
    assert client.get(path, headers=other["admin"].headers).status_code == 404
    assert accept(client, invitee.headers, invitation["id"]).status_code == 200
    r = client.delete(path, headers=team["owner"].headers)
    assert r.status_code == 409


def test_listing_is_for_admins_and_owners(client, factory):
    team, other = make_team(client, factory), make_team(client, factory)
    mine = invite(client, team["admin"], factory.user()).get_json()
    invite(client, other["owner"], factory.user())
    for role in ("admin", "owner"):
        r = client.get("/api/v1/invitations", headers=team[role].headers)
        assert r.status_code == 200 and r.get_json() == {"invitations": [mine]}
    assert client.get("/api/v1/invitations", headers=team["member"].headers).status_code == 403
    narrow = mint(client, team["owner"].key, scope="keys:read")
    assert client.get("/api/v1/invitations", headers=bearer(narrow)).status_code == 403


def test_cli_accepts_for_the_invitee_and_members_add_stays_direct(client, factory, app):
    team = make_team(client, factory)
    email = factory.user()
    invitation = invite(client, team["owner"], email, role="admin").get_json()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["invitations", "list", "--workspace", team.slug, "--json"])
    assert result.exit_code == 0 and invitation["id"] in result.output
    result = runner.invoke(args=["invitations", "accept", invitation["id"], "--email",
                                 factory.user()])
    assert result.exit_code != 0 and "no invitation" in result.output
    result = runner.invoke(args=["invitations", "accept", invitation["id"], "--email", email])
    assert result.exit_code == 0, result.output
    assert member_emails(client, team)[email] == "admin"
    [event] = audit_events(app, "invitation.accepted")
    assert (event.actor_type, event.actor_id) == ("system", "cli")
    # The operator's `members add` adds at once, no invitation.
    direct = factory.user()
    result = runner.invoke(args=["members", "add", team.slug, direct])
    assert result.exit_code == 0, result.output
    assert member_emails(client, team)[direct] == "member"


def test_cli_revoke_and_disabled_invitee(client, factory, app):
    team = make_team(client, factory)
    email = factory.user()
    invitation = invite(client, team["owner"], email).get_json()
    disable(app, email)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["invitations", "accept", invitation["id"], "--email", email])
    assert result.exit_code != 0 and "disabled" in result.output
    result = runner.invoke(args=["invitations", "revoke", invitation["id"]])
    assert result.exit_code == 0, result.output
    assert email not in member_emails(client, team)
    assert user_id(app, email)  # the user is untouched
