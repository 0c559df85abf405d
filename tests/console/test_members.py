"""Members page: the API's rules (app.services.access) through forms; invitations end to end."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.extensions import db
from app.models import Invitation
from app.services import accounts
from tests.console.admin_support import ADMIN, MEMBER, OWNER, Acme, make_acme, submit, text
from tests.console.support import csrf_from, sign_in
from tests.support import user_id

PAGE = "/console/w/acme/members"


@pytest.fixture
def acme(app: Any, factory: Any) -> Acme:
    return make_acme(app, factory)


def role_of(acme: Acme, email: str) -> str | None:
    with acme.app.app_context():
        ws = accounts.get_workspace(db.session, "acme")
        user = accounts.get_user_by_email(db.session, email)
        found = accounts.get_membership(db.session, ws, user)
        return found.role if found else None


def pending(acme: Acme) -> list[tuple[str, str]]:
    with acme.app.app_context():
        return [(i.email, i.role) for i in db.session.query(Invitation)
                .filter_by(status="pending").order_by(Invitation.id)]


def field_error(body: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{re.escape(field)}-error">([^<]*)</p>', body)
    assert match, f"no error next to {field}"
    return match.group(1)


def test_owners_and_admins_see_every_member_with_the_actions(acme: Acme) -> None:
    for client in (acme.owner, acme.admin):
        page = client.get(PAGE)
        assert page.status_code == 200
        body = text(page)
        assert "<h1>Members</h1>" in body
        for email in (OWNER, ADMIN, MEMBER):
            assert email in body
        assert "Invite member" in body and "Remove" in body
    # Only owners change roles; admins see roles as text.
    assert "Change role" in text(acme.owner.get(PAGE))
    assert "Change role" not in text(acme.admin.get(PAGE))


def test_a_member_gets_a_403_page_and_cannot_post_either(acme: Acme) -> None:
    page = acme.member.get(PAGE)
    assert page.status_code == 403
    assert page.mimetype == "text/html"
    body = text(page)
    assert "Only admins and owners" in body and "Invite member" not in body
    token = csrf_from(acme.member.get("/console/w/acme/keys"))
    refused = acme.member.post(f"{PAGE}/invite", data={"csrf_token": token,
                                                       "email": "x@example.com"})
    assert refused.status_code == 403
    assert pending(acme) == []


def test_an_admin_invites_a_member(acme: Acme) -> None:
    response = submit(acme.admin, f"{PAGE}/invite", {"email": "New@Example.com",
                                                      "role": "member"}, page=PAGE)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{PAGE}?done=invited"
    assert pending(acme) == [("new@example.com", "member")]
    body = text(acme.admin.get(response.headers["Location"]))
    assert "Invitation created" in body and "new@example.com" in body
    [event] = acme.events("invitation.created")
    assert event.actor_type == "user" and event.actor_id == user_id(acme.app, ADMIN)


def test_an_admin_cannot_invite_an_admin_and_sees_why_next_to_the_role(acme: Acme) -> None:
    response = submit(acme.admin, f"{PAGE}/invite", {"email": "boss@example.com",
                                                      "role": "admin"}, page=PAGE)
    assert response.status_code == 403
    assert field_error(text(response), "role") == \
        "Only owners can add a member with the role admin."
    assert 'value="boss@example.com"' in text(response)  # what was typed stays
    assert pending(acme) == []
    # The owner may.
    assert submit(acme.owner, f"{PAGE}/invite", {"email": "boss@example.com",
                                                 "role": "admin"}, page=PAGE).status_code == 303
    assert pending(acme) == [("boss@example.com", "admin")]


@pytest.mark.parametrize(("email", "status", "message"), [
    ("not-an-email", 400, "Not a valid email address: 'not-an-email'."),
    (MEMBER, 409, f"{MEMBER} is already a member of this workspace."),
])
def test_a_bad_invitation_shows_the_services_message_next_to_the_email(
        acme: Acme, email: str, status: int, message: str) -> None:
    response = submit(acme.owner, f"{PAGE}/invite", {"email": email, "role": "member"},
                      page=PAGE)
    assert response.status_code == status
    assert field_error(text(response), "email") == message.replace("'", "&#39;")
    assert pending(acme) == []


def test_the_owner_changes_a_role_and_the_last_owner_is_protected(acme: Acme) -> None:
    member_id = user_id(acme.app, MEMBER)
    response = submit(acme.owner, f"{PAGE}/{member_id}/role", {"role": "admin"}, page=PAGE)
    assert response.status_code == 303
    assert role_of(acme, MEMBER) == "admin"
    [event] = acme.events("member.role_changed")
    assert event.details == {"from": "member", "to": "admin"}

    owner_id = user_id(acme.app, OWNER)
    refused = submit(acme.owner, f"{PAGE}/{owner_id}/role", {"role": "member"}, page=PAGE)
    assert refused.status_code == 409
    assert field_error(text(refused), f"role-{owner_id}") == \
        "The last owner of a workspace cannot be demoted."
    assert role_of(acme, OWNER) == "owner"


def test_an_admin_cannot_change_roles(acme: Acme) -> None:
    member_id = user_id(acme.app, MEMBER)
    response = submit(acme.admin, f"{PAGE}/{member_id}/role", {"role": "admin"}, page=PAGE)
    assert response.status_code == 403
    assert field_error(text(response), f"role-{member_id}") == "Only owners can change roles."
    assert role_of(acme, MEMBER) == "member"


def test_removing_a_member_asks_first_then_revokes_their_keys(acme: Acme) -> None:
    key = acme.factory.key("acme", MEMBER)
    member_id = user_id(acme.app, MEMBER)
    confirm = acme.admin.get(f"{PAGE}/{member_id}/remove")
    assert confirm.status_code == 200
    body = text(confirm)
    assert "Remove member" in body and "1 active key" in body
    assert role_of(acme, MEMBER) == "member"  # a GET changes nothing
    response = acme.admin.post(f"{PAGE}/{member_id}/remove",
                               data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 303
    assert role_of(acme, MEMBER) is None
    [event] = acme.events("member.removed")
    assert event.details == {"role": "member", "keys_revoked": 1}
    token = acme.app.test_client().post("/oauth/token", data={"grant_type": "client_credentials"},
                                        auth=(key.client_id, key.secret))
    assert token.status_code == 401


def test_an_admin_cannot_remove_the_owner(acme: Acme) -> None:
    owner_id = user_id(acme.app, OWNER)
    response = submit(acme.admin, f"{PAGE}/{owner_id}/remove", page=f"{PAGE}/{owner_id}/remove")
    assert response.status_code == 403
    assert "Only owners can remove a member with the role owner" in text(response)
    assert role_of(acme, OWNER) == "owner"


def test_a_member_may_leave_but_not_remove_others(acme: Acme) -> None:
    admin_id, member_id = user_id(acme.app, ADMIN), user_id(acme.app, MEMBER)
    assert acme.member.get(f"{PAGE}/{admin_id}/remove").status_code == 403
    leave = acme.member.get(f"{PAGE}/{member_id}/remove")
    assert leave.status_code == 200 and "Leave workspace" in text(leave)
    response = acme.member.post(f"{PAGE}/{member_id}/remove",
                                data={"csrf_token": csrf_from(leave)})
    assert response.status_code == 303 and response.headers["Location"] == "/console/"
    assert role_of(acme, MEMBER) is None


def test_the_last_owner_cannot_leave(acme: Acme) -> None:
    owner_id = user_id(acme.app, OWNER)
    response = submit(acme.owner, f"{PAGE}/{owner_id}/remove", page=f"{PAGE}/{owner_id}/remove")
    assert response.status_code == 409
    assert ('<p class="notice error" role="alert" id="form-error">The last owner of a '
            "workspace cannot be removed.</p>") in text(response)
    assert role_of(acme, OWNER) == "owner"


def test_an_unknown_member_is_a_404(acme: Acme) -> None:
    assert acme.owner.get(f"{PAGE}/999999/remove").status_code == 404
    assert acme.owner.get(f"{PAGE}/abc/remove").status_code == 404


def test_an_invitation_is_revoked_by_an_admin(acme: Acme) -> None:
    submit(acme.admin, f"{PAGE}/invite", {"email": "new@example.com"}, page=PAGE)
    body = text(acme.admin.get(PAGE))
    [public_id] = re.findall(r"/console/w/acme/invitations/(inv_[A-Za-z0-9]+)/revoke", body)
    response = submit(acme.admin, f"/console/w/acme/invitations/{public_id}/revoke", page=PAGE)
    assert response.status_code == 303
    assert pending(acme) == []
    assert [e.target_id for e in acme.events("invitation.revoked")] == [public_id]


def test_the_invitee_accepts_in_the_console(acme: Acme) -> None:
    # The invitee already uses keymint in another workspace (a sign-in needs one).
    invitee = acme.factory.user("dan@example.com")
    acme.factory.workspace(owner=invitee, slug="dans")
    submit(acme.owner, f"{PAGE}/invite", {"email": invitee, "role": "admin"}, page=PAGE)
    client = acme.app.test_client()
    sign_in(client, acme.app, invitee)
    page = client.get("/console/invitations")
    assert page.status_code == 200
    body = text(page)
    assert "acme" in body and "admin" in body
    [public_id] = re.findall(r"/console/invitations/(inv_[A-Za-z0-9]+)/accept", body)
    # Nobody else can accept it.
    other = acme.member.post(f"/console/invitations/{public_id}/accept",
                             data={"csrf_token": csrf_from(acme.member.get(
                                 "/console/invitations"))})
    assert other.status_code == 404
    response = client.post(f"/console/invitations/{public_id}/accept",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/w/acme/keys"
    assert role_of(acme, invitee) == "admin"
    assert "No pending invitations for you" in text(client.get("/console/invitations"))


def test_a_new_user_with_only_an_invitation_signs_in_and_accepts(acme: Acme) -> None:
    newcomer = acme.factory.user("eve@example.com")  # in no workspace yet
    submit(acme.admin, f"{PAGE}/invite", {"email": newcomer}, page=PAGE)
    client = acme.app.test_client()
    sign_in(client, acme.app, newcomer)
    start = client.get("/console/")
    assert start.status_code == 302 and start.headers["Location"] == "/console/invitations"
    page = client.get("/console/invitations")
    [public_id] = re.findall(r"/console/invitations/(inv_[A-Za-z0-9]+)/accept", text(page))
    response = client.post(f"/console/invitations/{public_id}/accept",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert role_of(acme, newcomer) == "member"
    assert client.get("/console/w/acme/keys").status_code == 200


def test_every_member_form_needs_its_csrf_token(acme: Acme) -> None:
    member_id = user_id(acme.app, MEMBER)
    for path, data in ((f"{PAGE}/invite", {"email": "x@example.com"}),
                       (f"{PAGE}/{member_id}/role", {"role": "admin"}),
                       (f"{PAGE}/{member_id}/remove", {})):
        response = acme.owner.post(path, data=data)
        assert response.status_code == 400, path
        assert "This form expired or did not come from keymint" in text(response)
    assert pending(acme) == [] and role_of(acme, MEMBER) == "member"
