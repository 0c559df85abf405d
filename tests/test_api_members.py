"""/api/v1/members: listing, inviting, role changes and removal, with who may do which."""

from __future__ import annotations

import pytest

from tests.support import (
    add_person,
    audit_events,
    bearer,
    introspect,
    make_team,
    mint,
    token_response,
)


def test_list_members_needs_members_read(client, factory):
    team = make_team(client, factory)
    r = client.get("/api/v1/members", headers=team["member"].headers)
    assert r.status_code == 200
    members = r.get_json()["members"]
    assert {(m["email"], m["role"]) for m in members} == {
        (team[role].email, role) for role in ("owner", "admin", "member")}
    assert all(m["status"] == "active" and m["joined_at"].endswith("Z") for m in members)
    token = mint(client, team["member"].key, scope="keys:read")
    r = client.get("/api/v1/members", headers=bearer(token))
    assert r.status_code == 403 and r.get_json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(("role", "new_role", "status"), [
    ("member", "member", 403), ("admin", "member", 202), ("admin", "admin", 403),
    ("admin", "owner", 403), ("owner", "admin", 202), ("owner", "owner", 202)])
def test_who_may_invite_whom(client, factory, app, role, new_role, status):
    """POST /members invites (docs/management-api.md): who may offer which role is unchanged,
    and the invited person is a member only after accepting."""
    team = make_team(client, factory)
    email = factory.user()
    r = client.post("/api/v1/members", headers=team[role].headers,
                    json={"email": email, "role": new_role})
    assert r.status_code == status, r.get_json()
    if status == 202:
        body = r.get_json()
        assert (body["email"], body["role"], body["status"]) == (email, new_role, "pending")
        assert r.headers["Location"] == f"/api/v1/invitations/{body['id']}"
        [event] = audit_events(app, "invitation.created")
        assert event.actor_id == team[role].user_id
        assert event.actor_key == team[role].key.client_id
        members = client.get("/api/v1/members", headers=team["owner"].headers).get_json()
        assert email not in {m["email"] for m in members["members"]}
    else:
        assert audit_events(app, "invitation.created") == []


def test_invite_defaults_to_member_and_rejects_bad_input(client, factory):
    team = make_team(client, factory)
    headers = team["owner"].headers
    email = factory.user()
    r = client.post("/api/v1/members", headers=headers, json={"email": email.upper()})
    assert r.status_code == 202 and r.get_json()["role"] == "member"
    assert r.get_json()["email"] == email
    r = client.post("/api/v1/members", headers=headers, json={"email": email})
    assert r.status_code == 409 and r.get_json()["field"] == "email"  # already invited
    r = client.post("/api/v1/members", headers=headers, json={"email": team["member"].email})
    assert r.status_code == 409 and r.get_json()["field"] == "email"  # already a member
    # An address without an account gets the same answer as one with an account.
    r = client.post("/api/v1/members", headers=headers, json={"email": "ghost@example.com"})
    assert r.status_code == 202 and r.get_json()["status"] == "pending"
    for body, field in [({"email": "x@example.com", "role": "god"}, "role"),
                        ({"role": "member"}, "email"), ({"email": 3}, "email"),
                        ({"email": "not-an-email"}, "email"),
                        ({"email": "a@example.com", "user_id": 1}, "user_id")]:
        r = client.post("/api/v1/members", headers=headers, json=body)
        assert r.status_code == 400 and r.get_json()["field"] == field, body


def test_disabled_user_gets_the_same_answer_and_cannot_join(client, factory, app):
    from app.extensions import db
    from app.services import accounts
    from app.services.audit import Actor

    team = make_team(client, factory)
    email = factory.user()
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session, email),
                              Actor.cli())
        db.session.commit()
    r = client.post("/api/v1/members", headers=team["owner"].headers, json={"email": email})
    assert r.status_code == 202 and r.get_json()["status"] == "pending"
    result = app.test_cli_runner().invoke(
        args=["invitations", "accept", r.get_json()["id"], "--email", email])
    assert result.exit_code != 0 and "disabled" in result.output
    members = client.get("/api/v1/members", headers=team["owner"].headers).get_json()
    assert email not in {m["email"] for m in members["members"]}


@pytest.mark.parametrize(("role", "status"), [("member", 403), ("admin", 403), ("owner", 200)])
def test_only_owners_change_roles(client, factory, app, role, status):
    team = make_team(client, factory)
    target = add_person(client, factory, team, "target")
    r = client.patch(f"/api/v1/members/{target.user_id}", headers=team[role].headers,
                     json={"role": "admin"})
    assert r.status_code == status
    if status == 200:
        assert r.get_json()["role"] == "admin"
        [event] = audit_events(app, "member.role_changed")
        assert event.details == {"from": "member", "to": "admin"}
        assert event.actor_key == team["owner"].key.client_id


def test_last_owner_cannot_be_demoted_or_removed(client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    path = f"/api/v1/members/{owner.user_id}"
    r = client.patch(path, headers=owner.headers, json={"role": "admin"})
    assert r.status_code == 409
    assert client.delete(path, headers=owner.headers).status_code == 409
    second = add_person(client, factory, team, "second", role="owner")
    assert client.patch(path, headers=second.headers, json={"role": "admin"}).status_code == 200
    # Now `second` is the last owner; the demoted one cannot undo it any more.
    r = client.patch(f"/api/v1/members/{second.user_id}", headers=owner.headers,
                     json={"role": "member"})
    assert r.status_code == 403
    r = client.patch(f"/api/v1/members/{second.user_id}", headers=second.headers,
                     json={"role": "member"})
    assert r.status_code == 409


@pytest.mark.parametrize(("role", "target_role", "status"), [
    ("member", "member", 403), ("admin", "member", 204), ("admin", "admin", 403),
    ("admin", "owner", 403), ("owner", "admin", 204), ("owner", "owner", 204)])
def test_who_may_remove_whom(client, factory, role, target_role, status):
    team = make_team(client, factory)
    target = add_person(client, factory, team, "target", role=target_role)
    r = client.delete(f"/api/v1/members/{target.user_id}", headers=team[role].headers)
    assert r.status_code == status


def test_anyone_may_leave(client, factory):
    team = make_team(client, factory)
    member = team["member"]
    r = client.delete(f"/api/v1/members/{member.user_id}", headers=member.headers)
    assert r.status_code == 204
    assert client.get("/api/v1/keys", headers=member.headers).status_code == 401


def test_removed_member_keys_and_tokens_stop_at_once(client, factory, app):
    team = make_team(client, factory)
    owner, member = team["owner"], team["member"]
    extra = factory.key(team.slug, member.email, scopes="introspect")
    extra_token = mint(client, extra)
    r = client.delete(f"/api/v1/members/{member.user_id}", headers=team["admin"].headers)
    assert r.status_code == 204
    assert client.get("/api/v1/keys", headers=member.headers).status_code == 401
    assert introspect(client, owner.key, extra_token) == {"active": False}
    assert token_response(client, extra).status_code == 401
    r = client.get(f"/api/v1/keys/{extra.client_id}", headers=owner.headers)
    assert r.get_json()["state"] == "revoked"
    [event] = audit_events(app, "member.removed")
    assert event.details["keys_revoked"] == 2 and event.actor_id == team["admin"].user_id
    assert client.get("/api/v1/members", headers=owner.headers).get_json()["members"][-1][
        "email"] != member.email


@pytest.mark.parametrize("user_id", ["999999", "abc", "1" * 30, "-1"])
def test_unknown_member_is_404(client, factory, user_id):
    team = make_team(client, factory)
    r = client.delete(f"/api/v1/members/{user_id}", headers=team["owner"].headers)
    assert r.status_code == 404


def test_member_of_another_workspace_is_404(client, factory):
    team = make_team(client, factory)
    other = make_team(client, factory)
    for method, body in (("patch", {"role": "admin"}), ("delete", None)):
        r = getattr(client, method)(f"/api/v1/members/{other['member'].user_id}",
                                    headers=team["owner"].headers, json=body)
        assert r.status_code == 404
    assert client.get("/api/v1/keys", headers=other["member"].headers).status_code == 200
