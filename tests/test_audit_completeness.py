"""Completeness: every state-changing CLI command and route writes exactly its audit events.

CASES is a table: one row per command/route variant, with what to run and exactly which
events (action, actor, target, workspace) must appear — no more, no fewer. A second test
walks the app's real CLI commands and non-GET routes and fails for any that no row covers
and that is not listed in READ_ONLY: adding a route means adding a row here.
Every case also scans every column of every audit row for secrets, tokens and digests.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from app import credentials
from app.clock import utcnow
from app.extensions import db
from app.models import AuditEvent
from app.services import accounts
from app.services import tokens as token_service
from tests.support import mint

# --- the world every case starts from -----------------------------------------------------


@dataclass
class World:
    """Workspace `acme` (owner + member with a key and a token); tracks every credential."""

    app: Any
    client: Any
    factory: Any
    owner: str = ""
    member: str = ""
    key: Any = None
    token: str = ""
    secrets: set[str] = field(default_factory=set)
    http: bool = False
    extra: Any = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    invitation: str = ""

    def user_id(self, email: str) -> str:
        with self.app.app_context():
            return str(accounts.get_user_by_email(db.session, email).id)

    def ws(self, slug: str = "acme") -> int:
        with self.app.app_context():
            return accounts.get_workspace(db.session, slug).id

    def jti(self, token: str) -> str:
        with self.app.app_context():
            return token_service.lookup(db.session, token).jti

    def new_key(self, email: str | None = None, scopes: str = "introspect keys:read"):
        key = self.factory.key("acme", email or self.member, scopes=scopes)
        self.secrets.add(key.secret)
        return key

    def new_token(self, key) -> str:
        token = mint(self.client, key)
        self.secrets.add(token)
        return token

    def cli(self, *args: str) -> Any:
        result = self.app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        self.secrets.update(re.findall(r"\b(?:sk|at)_[0-9A-Za-z]{20,}", result.output))
        return result

    def post(self, path: str, data: dict[str, str], auth: tuple[str, str] | None = None):
        self.http = True
        if auth:
            self.secrets.add(auth[1])
            self.secrets.add(base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        self.secrets.update(v for v in data.values() if v.startswith(("sk_", "at_")))
        response = self.client.post(path, data=data, auth=auth)
        body = response.get_json(silent=True) or {}
        if "access_token" in body:
            self.secrets.add(body["access_token"])
        return response


@pytest.fixture
def world(app, client, factory) -> World:
    w = World(app, client, factory)
    w.owner = factory.user("owner@example.com")
    factory.workspace(w.owner, slug="acme")
    w.member = factory.member("acme", factory.user("member@example.com"))
    w.key = w.new_key()
    w.token = w.new_token(w.key)
    return w


# --- the table ----------------------------------------------------------------------------

Event = tuple[str, str, str | None, str | None, str | None, str | None, int | None]


def cli_event(action: str, target_type: str | None, target_id: str | None,
              workspace: int | None) -> Event:
    return (action, "system", "cli", None, target_type, target_id, workspace)


def key_event(w: World, key: Any, action: str, target_type: str | None,
              target_id: str | None, email: str | None = None) -> Event:
    """An event caused by a request authenticated with `key` (its owner is the actor)."""
    return (action, "user", w.user_id(email or w.member), key.client_id, target_type,
            target_id, w.ws())


def auth_failed(client_id: str | None, workspace: int | None) -> Event:
    return ("client.auth_failed", "client", None, None, "key" if client_id else None,
            client_id, workspace)


@dataclass(frozen=True)
class Case:
    covers: str                                     # "cli: keys create" / "POST /oauth/token"
    variant: str
    run: Callable[[World], Any]                     # does the thing; returns facts for expect
    expect: Callable[[World, Any], list[Event]]     # exactly these events, in order
    prepare: Callable[[World], Any] = lambda w: None  # setup whose events are not checked

    @property
    def id(self) -> str:
        return f"{self.covers} [{self.variant}]"


def _token_of_key(w: World) -> tuple[Any, str]:
    key = w.new_key()
    return key, w.new_token(key)


def _purge_run(w: World) -> None:
    with freeze_time(utcnow() + timedelta(days=1)):
        w.cli("tokens", "purge", "--retention-days", "0")


def _prepare_purge(w: World) -> None:
    w.post("/oauth/revoke", {"token": w.token}, auth=w.key.auth)


def _client_id_of(result: Any) -> str:
    return re.search(r"key_[0-9A-Za-z]{24}", result.output).group(0)


UNKNOWN_CLIENT_ID = credentials.new_client_id()
ADMIN_SCOPES = "keys:read keys:write members:read members:write"


RESOURCE = "https://r.example.com"


def _prepare_resource(w: World) -> None:
    w.cli("resources", "create", RESOURCE, "--name", "R", "--scope", "r:read")


def _owner_bearer(w: World) -> dict[str, str]:
    """A management token of the workspace owner (setup: its events are not checked)."""
    key = w.new_key(w.owner, scopes=ADMIN_SCOPES)
    w.extra = key
    return {"Authorization": f"Bearer {w.new_token(key)}"}


def _api(w: World, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    w.http = True
    response = w.client.open(path, method=method, json=body, headers=w.extra_headers)
    assert response.status_code < 400, response.get_json()
    payload = response.get_json(silent=True) or {}
    if "client_secret" in payload:
        w.secrets.add(payload["client_secret"])
    return response


def _prepare_api(w: World) -> None:
    w.extra_headers = _owner_bearer(w)


def owner_event(w: World, action: str, target_type: str, target_id: str) -> Event:
    return key_event(w, w.extra, action, target_type, target_id, email=w.owner)


def _prepare_invitation(w: World, invitee_token: bool = False) -> None:
    """A pending invitation of acme for new@example.com (a user with a workspace of their
    own); with `invitee_token`, requests then carry that user's token from their workspace."""
    w.factory.user("new@example.com")
    w.factory.workspace("new@example.com", slug="elsewhere")
    _prepare_api(w)
    w.invitation = _api(w, "POST", "/api/v1/members",
                        {"email": "new@example.com"}).get_json()["id"]
    if invitee_token:
        key = w.factory.key("elsewhere", "new@example.com", scopes="keys:read")
        w.secrets.add(key.secret)
        w.extra_headers = {"Authorization": f"Bearer {w.new_token(key)}"}


def _invitee_event(w: World, action: str, target_type: str, target_id: str) -> Event:
    """Accepting: the invitee acts; their key belongs to another workspace and is not named."""
    return (action, "user", w.user_id("new@example.com"), None, target_type, target_id,
            w.ws())


def _legacy_csv(w: World, rows: str) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)  # noqa: SIM115
    handle.write("workspace,key,label\n" + rows)
    handle.close()
    return handle.name


def _prepare_legacy(w: World) -> None:
    w.cli("legacy", "import", _legacy_csv(w, "acme,legacy-static-key-0001,old integration\n"))


def _brownout_id(w: World) -> str:
    from app.models import LegacyBrownout

    with w.app.app_context():
        return str(db.session.scalar(select(func.max(LegacyBrownout.id))))


def _add_brownout(w: World) -> str:
    w.cli("legacy", "brownouts", "add", "--start", "2099-01-01T00:00:00Z",
          "--end", "2099-01-01T01:00:00Z")
    return _brownout_id(w)


def _legacy_id(w: World) -> str:
    from app.models import LegacyKey

    with w.app.app_context():
        return str(db.session.scalar(select(LegacyKey.id)))

def _signing_kek(w: World) -> None:
    from app.config import Secret

    w.app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = Secret(b"k" * 32)


def _rotate_key(w: World, *flags: str) -> str:
    _signing_kek(w)
    return json.loads(w.cli("signing-keys", "rotate", "--json", *flags).output)["kid"]


def _kids(w: World) -> list[str]:
    from app.models import SigningKey

    with w.app.app_context():
        return list(db.session.scalars(select(SigningKey.kid).order_by(SigningKey.id)))


def _signing_event(action: str, kid: str) -> Event:
    return cli_event(action, "signing_key", kid, None)


WEBHOOK_URL = "https://hooks.example.com/keymint"


def _prepare_webhook(w: World, *, api: bool = True, delivery: bool = False) -> None:
    """An endpoint of acme (w.webhook); with `api`, an owner token that manages webhooks;
    with `delivery`, a queued webhook.test delivery (w.delivery)."""
    from app.services import webhooks
    from app.services.audit import Actor

    if api:
        key = w.new_key(w.owner, scopes=ADMIN_SCOPES + " webhooks:read webhooks:write")
        w.extra = key
        w.extra_headers = {"Authorization": f"Bearer {w.new_token(key)}"}
    with w.app.app_context():
        made = webhooks.create_endpoint(db.session, w.ws(), Actor.cli(), url=WEBHOOK_URL,
                                        allow_private=False)
        w.secrets.add(made.secret)
        w.webhook = made.endpoint.public_id
        if delivery:
            w.delivery = webhooks.send_test(db.session, made.endpoint, Actor.cli()).public_id
        db.session.commit()


def _webhook_api(w: World, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = _api(w, method, path, body)
    secret = (response.get_json(silent=True) or {}).get("secret")
    if secret:
        w.secrets.add(secret)
    return response


def _webhook_event(w: World, action: str, webhook_id: str) -> Event:
    return owner_event(w, action, "webhook", webhook_id)


def _webhook_cli(w: World, *args: str) -> Any:
    result = w.cli("webhooks", *args)
    w.secrets.update(re.findall(r"whsec_[A-Za-z0-9+/=]+", result.output))
    return result


CASES: list[Case] = [
    Case("cli: signing-keys rotate", "first key, --now",
         lambda w: _rotate_key(w, "--now"),
         lambda w, kid: [_signing_event("signing_key.created", kid)]),
    Case("cli: signing-keys rotate", "the signing key retires when the new one signs",
         lambda w: _rotate_key(w),
         lambda w, kid: [_signing_event("signing_key.retired", _kids(w)[0]),
                         _signing_event("signing_key.created", kid)],
         prepare=lambda w: _rotate_key(w, "--now")),
    Case("cli: signing-keys retire", "a pending key",
         lambda w: w.cli("signing-keys", "retire", _kids(w)[1]),
         lambda w, _: [_signing_event("signing_key.retired", _kids(w)[1])],
         prepare=lambda w: (_rotate_key(w, "--now"), _rotate_key(w))),
    Case("cli: signing-keys list", "read only",
         lambda w: w.cli("signing-keys", "list"), lambda w, _: []),
    # CLI ------------------------------------------------------------------------------------
    Case("cli: users create", "new user",
         lambda w: w.cli("users", "create", "new@example.com"),
         lambda w, _: [cli_event("user.created", "user", w.user_id("new@example.com"), None)]),
    Case("cli: users disable", "member of one workspace",
         lambda w: w.cli("users", "disable", w.member),
         lambda w, _: [cli_event("user.disabled", "user", w.user_id(w.member), w.ws())]),
    Case("cli: users disable", "already disabled: nothing changes",
         lambda w: w.cli("users", "disable", w.member),
         lambda w, _: [],
         prepare=lambda w: w.cli("users", "disable", w.member)),
    Case("cli: workspaces create", "new workspace",
         lambda w: w.cli("workspaces", "create", "beta", "--owner", w.owner),
         lambda w, _: [cli_event("workspace.created", "workspace", str(w.ws("beta")),
                                 w.ws("beta"))]),
    Case("cli: members add", "as admin",
         lambda w: w.cli("members", "add", "acme", "new@example.com", "--role", "admin"),
         lambda w, _: [cli_event("member.added", "user", w.user_id("new@example.com"),
                                 w.ws())],
         prepare=lambda w: w.factory.user("new@example.com")),
    Case("cli: members remove", "member with one live key",
         lambda w: w.cli("members", "remove", "acme", w.member),
         lambda w, _: [cli_event("key.revoked", "key", w.key.client_id, w.ws()),
                       cli_event("member.removed", "user", w.user_id(w.member), w.ws())]),
    Case("cli: keys create", "new key",
         lambda w: w.cli("keys", "create", "--workspace", "acme", "--user", w.member,
                         "--scope", "keys:read"),
         lambda w, result: [cli_event("key.created", "key", _client_id_of(result), w.ws())]),
    Case("cli: keys revoke", "live key",
         lambda w: w.cli("keys", "revoke", w.key.client_id),
         lambda w, _: [cli_event("key.revoked", "key", w.key.client_id, w.ws())]),
    Case("cli: keys revoke", "already revoked: nothing changes",
         lambda w: w.cli("keys", "revoke", w.key.client_id),
         lambda w, _: [],
         prepare=lambda w: w.cli("keys", "revoke", w.key.client_id)),
    Case("cli: keys rotate", "with grace period",
         lambda w: w.cli("keys", "rotate", w.key.client_id, "--grace-period", "60"),
         lambda w, _: [cli_event("key.secret_rotated", "key", w.key.client_id, w.ws())]),
    Case("cli: keys update", "set a rate limit",
         lambda w: w.cli("keys", "update", w.key.client_id, "--rate-limit", "5 per second"),
         lambda w, _: [cli_event("key.updated", "key", w.key.client_id, w.ws())]),
    Case("cli: keys update", "same rate limit again: nothing changes",
         lambda w: w.cli("keys", "update", w.key.client_id, "--rate-limit", "5 per second"),
         lambda w, _: [],
         prepare=lambda w: w.cli("keys", "update", w.key.client_id, "--rate-limit",
                                 "5 per second")),
    Case("cli: ratelimit clear", "a key's counters",
         lambda w: w.cli("ratelimit", "clear", "--client-id", w.key.client_id),
         lambda w, _: [cli_event("ratelimit.cleared", "key", w.key.client_id, w.ws())]),
    Case("cli: ratelimit clear", "an address's counters",
         lambda w: w.cli("ratelimit", "clear", "--ip", "192.0.2.1"),
         lambda w, _: [cli_event("ratelimit.cleared", "ip", "192.0.2.1", None)]),
    Case("cli: resources create", "new resource",
         lambda w: w.cli("resources", "create", RESOURCE, "--name", "R", "--scope", "r:read"),
         lambda w, _: [cli_event("resource.created", "resource", RESOURCE, None)]),
    Case("cli: resources update", "rename",
         lambda w: w.cli("resources", "update", RESOURCE, "--name", "R2"),
         lambda w, _: [cli_event("resource.updated", "resource", RESOURCE, None)],
         prepare=_prepare_resource),
    Case("cli: resources update", "same name again: nothing changes",
         lambda w: w.cli("resources", "update", RESOURCE, "--name", "R"),
         lambda w, _: [], prepare=_prepare_resource),
    Case("cli: resources delete", "unused resource",
         lambda w: w.cli("resources", "delete", RESOURCE),
         lambda w, _: [cli_event("resource.deleted", "resource", RESOURCE, None)],
         prepare=_prepare_resource),
    Case("cli: resources restrict-key", "bind an introspecting key to its resource",
         lambda w: w.cli("resources", "restrict-key", w.key.client_id, "--introspects-for",
                         RESOURCE),
         lambda w, _: [cli_event("key.updated", "key", w.key.client_id, w.ws())],
         prepare=_prepare_resource),
    Case("cli: resources list", "read only",
         lambda w: w.cli("resources", "list"), lambda w, _: []),
    Case("cli: resources show", "read only",
         lambda w: w.cli("resources", "show", RESOURCE), lambda w, _: [],
         prepare=_prepare_resource),
    Case("cli: keys list", "read only",
         lambda w: w.cli("keys", "list"), lambda w, _: []),
    Case("cli: keys show", "read only",
         lambda w: w.cli("keys", "show", w.key.client_id), lambda w, _: []),
    Case("cli: users list", "read only",
         lambda w: w.cli("users", "list", "--json"), lambda w, _: []),
    Case("cli: users enable", "a disabled member of one workspace",
         lambda w: w.cli("users", "enable", w.member),
         lambda w, _: [cli_event("user.enabled", "user", w.user_id(w.member), w.ws())],
         prepare=lambda w: w.cli("users", "disable", w.member)),
    Case("cli: console login-link", "a member of one workspace",
         lambda w: w.cli("console", "login-link", w.member, "--base-url",
                         "https://keymint.example"),
         lambda w, _: [cli_event("console.login_link_created", "user", w.user_id(w.member),
                                 w.ws())]),
    Case("cli: users enable", "already active: nothing changes",
         lambda w: w.cli("users", "enable", w.member), lambda w, _: []),
    Case("cli: workspaces list", "read only",
         lambda w: w.cli("workspaces", "list"), lambda w, _: []),
    Case("cli: workspaces show", "read only",
         lambda w: w.cli("workspaces", "show", "acme"), lambda w, _: []),
    Case("cli: members list", "read only",
         lambda w: w.cli("members", "list", "acme"), lambda w, _: []),
    Case("cli: members set-role", "member to admin",
         lambda w: w.cli("members", "set-role", "acme", w.member, "admin"),
         lambda w, _: [cli_event("member.role_changed", "user", w.user_id(w.member), w.ws())]),
    Case("cli: members transfer-ownership", "owner to a member",
         lambda w: w.cli("members", "transfer-ownership", "acme", "--from", w.owner,
                         "--to", w.member),
         lambda w, _: [cli_event("member.role_changed", "user", w.user_id(w.member), w.ws()),
                       cli_event("member.role_changed", "user", w.user_id(w.owner), w.ws())]),
    Case("cli: config check", "read only",
         lambda w: w.cli("config", "check"), lambda w, _: []),
    Case("cli: legacy brownouts add", "a future window",
         lambda w: w.cli("legacy", "brownouts", "add", "--start", "2099-01-01T00:00:00Z",
                         "--end", "2099-01-01T01:00:00Z"),
         lambda w, _: [cli_event("legacy.brownout_added", "brownout", _brownout_id(w), None)]),
    Case("cli: legacy brownouts list", "read only",
         lambda w: w.cli("legacy", "brownouts", "list", "--all"), lambda w, _: []),
    Case("cli: legacy brownouts remove", "a stored window",
         lambda w: w.cli("legacy", "brownouts", "remove", w.extra),
         lambda w, _: [cli_event("legacy.brownout_removed", "brownout", w.extra, None)],
         prepare=lambda w: setattr(w, "extra", _add_brownout(w))),
    Case("cli: keys expiring", "read only",
         lambda w: w.cli("keys", "expiring", "--within-days", "30"), lambda w, _: []),
    Case("cli: tokens purge", "one revoked token past retention",
         _purge_run,
         lambda w, _: [("token.purged", "system", "cli", None, None, None, None)],
         prepare=_prepare_purge),
    Case("cli: tokens purge", "nothing to purge",
         lambda w: w.cli("tokens", "purge"), lambda w, _: []),
    Case("cli: demo", "fresh database",
         lambda w: w.cli("demo", "--force"),  # --force: the PostgreSQL run
         lambda w, result: [
             cli_event("user.created", "user", w.user_id("demo@example.com"), None),
             cli_event("workspace.created", "workspace", str(w.ws("demo")), w.ws("demo")),
             cli_event("key.created", "key", _client_id_of(result), w.ws("demo"))]),
    # The chain's own records are seals, not events (an event per seal would never settle).
    Case("cli: audit seal", "writes a seal, no event",
         lambda w: w.cli("audit", "seal"), lambda w, _: []),
    Case("cli: audit prune", "writes a prune seal, no event",
         lambda w: w.cli("audit", "prune", "--before", "2000-01-01T00:00:00Z"),
         lambda w, _: []),
    Case("cli: audit verify", "read only",
         lambda w: w.cli("audit", "verify"), lambda w, _: []),
    Case("cli: audit export", "read only",
         lambda w: w.cli("audit", "export"), lambda w, _: []),
    Case("cli: legacy import", "one key for acme",
         lambda w: w.cli("legacy", "import",
                         _legacy_csv(w, "acme,legacy-static-key-0001,old integration\n")),
         lambda w, _: [cli_event("legacy.imported", "workspace", str(w.ws()), w.ws())]),
    Case("cli: legacy import", "same file again: nothing changes",
         lambda w: w.cli("legacy", "import",
                         _legacy_csv(w, "acme,legacy-static-key-0001,old integration\n")),
         lambda w, _: [], prepare=_prepare_legacy),
    Case("cli: legacy migrate", "with --disable-legacy",
         lambda w: w.cli("legacy", "migrate", "--workspace", "acme", "--owner", w.owner,
                         "--disable-legacy"),
         lambda w, result: [
             cli_event("key.created", "key", _client_id_of(result), w.ws()),
             cli_event("legacy.migrated", "legacy_key", _legacy_id(w), w.ws()),
             cli_event("legacy.disabled", "legacy_key", _legacy_id(w), w.ws())],
         prepare=_prepare_legacy),
    Case("cli: legacy report", "read only",
         lambda w: w.cli("legacy", "report"), lambda w, _: [], prepare=_prepare_legacy),
    # Management API -------------------------------------------------------------------------
    Case("POST /api/v1/keys", "owner creates a key",
         lambda w: _api(w, "POST", "/api/v1/keys", {"name": "ci", "scopes": ["keys:read"]}),
         lambda w, r: [owner_event(w, "key.created", "key", r.get_json()["client_id"])],
         prepare=_prepare_api),
    Case("PATCH /api/v1/keys/<client_id>", "rename",
         lambda w: _api(w, "PATCH", f"/api/v1/keys/{w.key.client_id}", {"name": "renamed"}),
         lambda w, _: [owner_event(w, "key.updated", "key", w.key.client_id)],
         prepare=_prepare_api),
    Case("DELETE /api/v1/keys/<client_id>", "revoke",
         lambda w: _api(w, "DELETE", f"/api/v1/keys/{w.key.client_id}"),
         lambda w, _: [owner_event(w, "key.revoked", "key", w.key.client_id)],
         prepare=_prepare_api),
    Case("POST /api/v1/keys/<client_id>/rotate", "own key, with grace period",
         lambda w: _api(w, "POST", f"/api/v1/keys/{w.extra.client_id}/rotate",
                        {"grace_period": 60}),
         lambda w, _: [owner_event(w, "key.secret_rotated", "key", w.extra.client_id)],
         prepare=_prepare_api),
    Case("DELETE /api/v1/keys/<client_id>/tokens", "revoke all tokens",
         lambda w: _api(w, "DELETE", f"/api/v1/keys/{w.key.client_id}/tokens"),
         lambda w, _: [owner_event(w, "key.tokens_revoked", "key", w.key.client_id)],
         prepare=_prepare_api),
    Case("POST /api/v1/members", "invite an existing user",
         lambda w: _api(w, "POST", "/api/v1/members",
                        {"email": "new@example.com", "role": "member"}),
         lambda w, r: [owner_event(w, "invitation.created", "invitation",
                                   r.get_json()["id"])],
         prepare=lambda w: (_prepare_api(w), w.factory.user("new@example.com"))),
    Case("POST /api/v1/members", "invite an unknown email: the same event",
         lambda w: _api(w, "POST", "/api/v1/members", {"email": "ghost@example.com"}),
         lambda w, r: [owner_event(w, "invitation.created", "invitation",
                                   r.get_json()["id"])],
         prepare=_prepare_api),
    Case("DELETE /api/v1/invitations/<invitation_id>", "revoke a pending invitation",
         lambda w: _api(w, "DELETE", f"/api/v1/invitations/{w.invitation}"),
         lambda w, _: [owner_event(w, "invitation.revoked", "invitation", w.invitation)],
         prepare=lambda w: _prepare_invitation(w)),
    Case("POST /api/v1/invitations/<invitation_id>/accept", "the invitee accepts",
         lambda w: _api(w, "POST", f"/api/v1/invitations/{w.invitation}/accept"),
         lambda w, _: [_invitee_event(w, "invitation.accepted", "invitation", w.invitation),
                       _invitee_event(w, "member.added", "user",
                                      w.user_id("new@example.com"))],
         prepare=lambda w: _prepare_invitation(w, invitee_token=True)),
    Case("cli: invitations accept", "for the invitee",
         lambda w: w.cli("invitations", "accept", w.invitation, "--email", "new@example.com"),
         lambda w, _: [cli_event("invitation.accepted", "invitation", w.invitation, w.ws()),
                       cli_event("member.added", "user", w.user_id("new@example.com"),
                                 w.ws())],
         prepare=lambda w: _prepare_invitation(w)),
    Case("cli: invitations revoke", "pending invitation",
         lambda w: w.cli("invitations", "revoke", w.invitation),
         lambda w, _: [cli_event("invitation.revoked", "invitation", w.invitation, w.ws())],
         prepare=lambda w: _prepare_invitation(w)),
    Case("cli: invitations list", "read only",
         lambda w: w.cli("invitations", "list", "--workspace", "acme"), lambda w, _: [],
         prepare=lambda w: _prepare_invitation(w)),
    Case("PATCH /api/v1/members/<user_id>", "promote to admin",
         lambda w: _api(w, "PATCH", f"/api/v1/members/{w.user_id(w.member)}",
                        {"role": "admin"}),
         lambda w, _: [owner_event(w, "member.role_changed", "user", w.user_id(w.member))],
         prepare=_prepare_api),
    Case("DELETE /api/v1/members/<user_id>", "member with one live key",
         lambda w: _api(w, "DELETE", f"/api/v1/members/{w.user_id(w.member)}"),
         lambda w, _: [owner_event(w, "key.revoked", "key", w.key.client_id),
                       owner_event(w, "member.removed", "user", w.user_id(w.member))],
         prepare=_prepare_api),
    Case("PATCH /api/v1/workspace", "set a key lifetime policy",
         lambda w: _api(w, "PATCH", "/api/v1/workspace", {"max_key_lifetime_days": 90}),
         lambda w, _: [owner_event(w, "workspace.policy_changed", "workspace", str(w.ws()))],
         prepare=_prepare_api),
    # OAuth ----------------------------------------------------------------------------------
    Case("POST /oauth/token", "client_secret_basic",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials"}, w.key.auth),
         lambda w, r: [key_event(w, w.key, "token.issued", "token",
                                 w.jti(r.get_json()["access_token"]))]),
    Case("POST /oauth/token", "client_secret_post",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials",
                                           "client_id": w.key.client_id,
                                           "client_secret": w.key.secret}),
         lambda w, r: [key_event(w, w.key, "token.issued", "token",
                                 w.jti(r.get_json()["access_token"]))]),
    Case("POST /oauth/token", "wrong secret",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials"},
                          (w.key.client_id, credentials.new_secret())),
         lambda w, _: [auth_failed(w.key.client_id, w.ws())]),
    Case("POST /oauth/token", "unknown client",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials"},
                          (UNKNOWN_CLIENT_ID, credentials.new_secret())),
         lambda w, _: [auth_failed(UNKNOWN_CLIENT_ID, None)]),
    Case("POST /oauth/token", "no credentials",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials"}),
         lambda w, _: [auth_failed(None, None)]),
    Case("POST /oauth/token", "revoked key",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials"}, w.key.auth),
         lambda w, _: [auth_failed(w.key.client_id, None)],
         prepare=lambda w: w.cli("keys", "revoke", w.key.client_id)),
    Case("POST /oauth/token", "scope the key lacks: no state change",
         lambda w: w.post("/oauth/token", {"grant_type": "client_credentials",
                                           "scope": "keys:write"}, w.key.auth),
         lambda w, _: []),
    Case("POST /oauth/introspect", "read only",
         lambda w: w.post("/oauth/introspect", {"token": w.token}, w.key.auth),
         lambda w, _: []),
    Case("POST /oauth/introspect", "wrong secret",
         lambda w: w.post("/oauth/introspect", {"token": w.token},
                          (w.key.client_id, credentials.new_secret())),
         lambda w, _: [auth_failed(w.key.client_id, w.ws())]),
    Case("POST /oauth/revoke", "own token",
         lambda w: w.post("/oauth/revoke", {"token": w.token}, w.key.auth),
         lambda w, _: [key_event(w, w.key, "token.revoked", "token", w.jti(w.token))]),
    Case("POST /oauth/revoke", "another key's token: nothing changes",
         lambda w: w.post("/oauth/revoke", {"token": w.token}, w.extra[0].auth),
         lambda w, _: [],
         prepare=lambda w: setattr(w, "extra", _token_of_key(w))),
    Case("POST /oauth/revoke", "already revoked: nothing changes",
         lambda w: w.post("/oauth/revoke", {"token": w.token}, w.key.auth),
         lambda w, _: [],
         prepare=lambda w: w.post("/oauth/revoke", {"token": w.token}, w.key.auth)),
    Case("POST /oauth/rotate", "active token",
         lambda w: w.post("/oauth/rotate", {"token": w.token}, w.key.auth),
         lambda w, r: [key_event(w, w.key, "token.rotated", "token",
                                 w.jti(r.get_json()["access_token"]))]),
    Case("POST /oauth/rotate", "reuse of a rotated token",
         lambda w: w.post("/oauth/rotate", {"token": w.token}, w.key.auth),
         lambda w, _: [key_event(w, w.key, "token.reuse_detected", "token", w.jti(w.token))],
         prepare=lambda w: w.post("/oauth/rotate", {"token": w.token}, w.key.auth)),
    # Webhooks -------------------------------------------------------------------------------
    Case("POST /api/v1/webhooks", "owner creates an endpoint",
         lambda w: _webhook_api(w, "POST", "/api/v1/webhooks", {"url": WEBHOOK_URL}),
         lambda w, r: [_webhook_event(w, "webhook.created", r.get_json()["id"])],
         prepare=_prepare_webhook),
    Case("PATCH /api/v1/webhooks/<webhook_id>", "disable",
         lambda w: _webhook_api(w, "PATCH", f"/api/v1/webhooks/{w.webhook}",
                                {"enabled": False}),
         lambda w, _: [_webhook_event(w, "webhook.updated", w.webhook)],
         prepare=_prepare_webhook),
    Case("DELETE /api/v1/webhooks/<webhook_id>", "delete",
         lambda w: _webhook_api(w, "DELETE", f"/api/v1/webhooks/{w.webhook}"),
         lambda w, _: [_webhook_event(w, "webhook.deleted", w.webhook)],
         prepare=_prepare_webhook),
    Case("POST /api/v1/webhooks/<webhook_id>/rotate-secret", "rotate",
         lambda w: _webhook_api(w, "POST", f"/api/v1/webhooks/{w.webhook}/rotate-secret"),
         lambda w, _: [_webhook_event(w, "webhook.secret_rotated", w.webhook)],
         prepare=_prepare_webhook),
    Case("POST /api/v1/webhooks/<webhook_id>/test", "queue a test event",
         lambda w: _webhook_api(w, "POST", f"/api/v1/webhooks/{w.webhook}/test"),
         lambda w, _: [_webhook_event(w, "webhook.tested", w.webhook)],
         prepare=_prepare_webhook),
    Case("POST /api/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/retry", "retry",
         lambda w: _webhook_api(
             w, "POST", f"/api/v1/webhooks/{w.webhook}/deliveries/{w.delivery}/retry"),
         lambda w, _: [_webhook_event(w, "webhook.delivery_retried", w.webhook)],
         prepare=lambda w: _prepare_webhook(w, delivery=True)),
    Case("cli: webhooks create", "new endpoint",
         lambda w: _webhook_cli(w, "create", "--workspace", "acme", "--url", WEBHOOK_URL),
         lambda w, r: [cli_event("webhook.created", "webhook",
                                 re.search(r"whe_[0-9A-Za-z]{24}", r.output).group(0),
                                 w.ws())]),
    Case("cli: webhooks update", "disable",
         lambda w: _webhook_cli(w, "update", "--workspace", "acme", w.webhook, "--disable"),
         lambda w, _: [cli_event("webhook.updated", "webhook", w.webhook, w.ws())],
         prepare=lambda w: _prepare_webhook(w, api=False)),
    Case("cli: webhooks delete", "delete",
         lambda w: _webhook_cli(w, "delete", "--workspace", "acme", w.webhook),
         lambda w, _: [cli_event("webhook.deleted", "webhook", w.webhook, w.ws())],
         prepare=lambda w: _prepare_webhook(w, api=False)),
    Case("cli: webhooks rotate-secret", "rotate",
         lambda w: _webhook_cli(w, "rotate-secret", "--workspace", "acme", w.webhook),
         lambda w, _: [cli_event("webhook.secret_rotated", "webhook", w.webhook, w.ws())],
         prepare=lambda w: _prepare_webhook(w, api=False)),
    Case("cli: webhooks test", "queue a test event",
         lambda w: _webhook_cli(w, "test", "--workspace", "acme", w.webhook),
         lambda w, _: [cli_event("webhook.tested", "webhook", w.webhook, w.ws())],
         prepare=lambda w: _prepare_webhook(w, api=False)),
    Case("cli: webhooks retry", "retry",
         lambda w: _webhook_cli(w, "retry", "--workspace", "acme", w.webhook, w.delivery),
         lambda w, _: [cli_event("webhook.delivery_retried", "webhook", w.webhook, w.ws())],
         prepare=lambda w: _prepare_webhook(w, api=False, delivery=True)),
    Case("cli: webhooks list", "read only",
         lambda w: _webhook_cli(w, "list", "--workspace", "acme"), lambda w, _: [],
         prepare=lambda w: _prepare_webhook(w, api=False)),
    Case("cli: webhooks deliveries", "read only",
         lambda w: _webhook_cli(w, "deliveries", "--workspace", "acme", w.webhook),
         lambda w, _: [], prepare=lambda w: _prepare_webhook(w, api=False, delivery=True)),
    Case("cli: webhooks run", "--once with nothing due: no event",
         lambda w: _webhook_cli(w, "run", "--once"), lambda w, _: []),
]


# Commands and routes that change nothing an auditor asks about (or only start a process).
READ_ONLY = {
    "cli: serve": "starts the WSGI server",
}
READ_ONLY_PREFIXES = {
    "cli: db ": "schema migrations (Flask-Migrate): the schema, not audited data",
    "POST /console/": "the console's forms call the API's services (audited by the rows "
                      "above); its own events are asserted in tests/console/",
}


# --- the checks ---------------------------------------------------------------------------

_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
_CREDENTIAL = re.compile(r"\b(?:sk|at)_[0-9A-Za-z]{20,}")


def _rows_after(app: Any, after: int) -> list[Any]:
    with app.app_context():
        return db.session.execute(select(AuditEvent).where(AuditEvent.id > after)
                                  .order_by(AuditEvent.id)).scalars().all()


def _max_id(app: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


def assert_no_secrets(app: Any, secrets: set[str]) -> None:
    """Every column of every audit row: no secret, token, Basic header or digest."""
    forbidden = set(secrets) | {credentials.digest(s) for s in secrets}
    with app.app_context():
        table = AuditEvent.__table__
        for row in db.session.execute(select(table)).mappings():
            for column, value in row.items():
                if value is None or column == "event_hash":
                    continue
                text = str(value)
                leaked = [s for s in forbidden if s in text]
                assert not leaked, f"audit event {row['id']} column {column} leaks a secret"
                assert not _CREDENTIAL.search(text), (row["id"], column)
                assert not _HEX64.search(text), f"digest-like value in {column}: {text}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_exactly_the_expected_events(world: World, case: Case) -> None:
    case.prepare(world)
    world.http = False
    before = _max_id(world.app)
    facts = case.run(world)
    rows = _rows_after(world.app, before)
    actual = [(r.action, r.actor_type, r.actor_id, r.actor_key, r.target_type, r.target_id,
               r.workspace_id) for r in rows]
    assert actual == case.expect(world, facts)
    if world.http:  # "from where": every event of a request carries its origin
        for r in rows:
            assert r.ip == "127.0.0.1" and r.request_id, r.action
    assert_no_secrets(world.app, world.secrets)


def _cli_commands(group: Any, prefix: str = "") -> set[str]:
    names = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            names |= _cli_commands(command, f"{prefix}{name} ")
        else:
            names.add(f"cli: {prefix}{name}")
    return names


def _state_changing_routes(app: Any) -> set[str]:
    routes = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"GET", "HEAD", "OPTIONS"}:
            routes.add(f"{method} {rule.rule}")
    return routes


def test_every_command_and_route_has_a_row(app) -> None:
    everything = {name for name in _cli_commands(app.cli) | _state_changing_routes(app)
                  if not name.startswith(tuple(READ_ONLY_PREFIXES))}
    covered = {case.covers for case in CASES} | set(READ_ONLY)
    missing = sorted(everything - covered)
    assert not missing, f"add rows to CASES (or READ_ONLY with a reason) for: {missing}"
    stale = sorted(covered - everything)
    assert not stale, f"rows for commands/routes that no longer exist: {stale}"
