"""Users, workspaces and memberships: bad input is refused with a clear error, nothing written."""

import pytest

from app.extensions import db
from app.services import accounts
from app.services.audit import Actor
from app.services.errors import Conflict, InvalidInput, NotFound
from tests.support import all_rows


@pytest.mark.parametrize("email", ["", "no-at-sign", "a@b", "a b@example.com", "a@@example.com",
                                   "x" * 250 + "@example.com", "nul\x00@example.com"])
def test_malformed_email_is_refused(app, email):
    with app.app_context(), pytest.raises(InvalidInput, match="email"):
        accounts.create_user(db.session, email, Actor.cli())


def test_email_is_normalised_and_unique(app):
    with app.app_context():
        user = accounts.create_user(db.session, "  Alice@Example.COM ", Actor.cli())
        db.session.commit()
        assert user.email == "alice@example.com"
        with pytest.raises(Conflict, match="already exists"):
            accounts.create_user(db.session, "alice@example.com", Actor.cli())


@pytest.mark.parametrize("slug", ["", "UPPER", "-lead", "trail-", "a" * 64, "sp ace", "ü"])
def test_invalid_slug_is_refused(app, factory, slug):
    owner = factory.user()
    with app.app_context():
        user = accounts.get_user_by_email(db.session, owner)
        with pytest.raises(InvalidInput, match="slug"):
            accounts.create_workspace(db.session, slug, user, Actor.cli())


def test_duplicate_slug_is_a_conflict_and_writes_nothing(app, factory):
    slug = factory.workspace()
    before = len(all_rows(app, "workspaces"))
    with app.app_context():
        user = accounts.get_user_by_email(db.session, factory.user())
        with pytest.raises(Conflict):
            accounts.create_workspace(db.session, slug, user, Actor.cli())
        db.session.rollback()
    assert len(all_rows(app, "workspaces")) == before


def test_invalid_role_is_refused(app, factory):
    slug = factory.workspace()
    email = factory.user()
    with app.app_context():
        ws = accounts.get_workspace(db.session, slug)
        user = accounts.get_user_by_email(db.session, email)
        with pytest.raises(InvalidInput, match="owner, admin, member"):
            accounts.add_member(db.session, ws, user, "superuser", Actor.cli())


def test_unknown_user_and_workspace_are_not_found(app):
    with app.app_context():
        with pytest.raises(NotFound):
            accounts.get_user_by_email(db.session, "ghost@example.com")
        with pytest.raises(NotFound):
            accounts.get_workspace(db.session, "ghost")


def test_last_owner_cannot_be_demoted_or_removed(app, factory):
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    with app.app_context():
        ws = accounts.get_workspace(db.session, slug)
        membership = accounts.get_membership(db.session, ws,
                                             accounts.get_user_by_email(db.session, owner))
        with pytest.raises(Conflict, match="last owner"):
            accounts.change_role(db.session, membership, "admin", Actor.cli())
        with pytest.raises(Conflict, match="last owner"):
            accounts.remove_member(db.session, membership, Actor.cli())


def test_second_owner_allows_demotion(app, factory):
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    factory.member(slug, role="owner")
    with app.app_context():
        ws = accounts.get_workspace(db.session, slug)
        membership = accounts.get_membership(db.session, ws,
                                             accounts.get_user_by_email(db.session, owner))
        accounts.change_role(db.session, membership, "admin", Actor.cli())
        db.session.commit()
        assert membership.role == "admin"
