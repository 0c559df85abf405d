"""The `keymint` / `flask --app wsgi` commands, each a thin call into the services."""

from __future__ import annotations

import csv
import functools
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext

from app import credentials
from app.clock import isoformat, parse_rfc3339, utcnow
from app.config import ConfigError, summary
from app.extensions import db
from app.serialize import audit_event_json, invitation_json, key_json
from app.services import accounts, audit, audit_chain, audit_query, keys, tokens
from app.services import invitations as invitation_service
from app.services import legacy as legacy_service
from app.services import legacy_import as import_service
from app.services import legacy_migration as migration_service
from app.services.audit import Actor
from app.services.errors import DomainError
from app.transactions import begin_write


def transactional(func: Callable[..., Any] | None = None, *,
                  writes: bool = True) -> Any:
    """Run a command in one transaction: commit on success, clean one-line error otherwise.

    A writing command is the writer from its first read (app.transactions.begin_write): on
    SQLite it waits for the server's writers and they for it, so what it checks before
    writing is still true when it writes. `writes=False` for commands that only read.
    """
    if func is None:
        return functools.partial(transactional, writes=writes)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if writes:
                begin_write(db.session)
            result = func(*args, **kwargs)
            db.session.commit()
            return result
        except DomainError as exc:
            db.session.rollback()
            raise click.ClickException(cli_message(exc)) from None
        except BaseException:
            db.session.rollback()
            raise

    return with_appcontext(wrapper)


# API field names the services' messages use -> the flags that carry them on the CLI.
_FLAGS = {"expires_at": "--expires-at", "expires_in_days": "--expires-in-days",
          "rate_limit": "--rate-limit", "grace_period": "--grace-period",
          "introspects_for": "--introspects-for"}
_FIELD_WORD = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b")


def cli_message(exc: DomainError) -> str:
    """A service's message with the API field names it mentions given as CLI flags
    ("give --expires-at or --expires-in-days, not both")."""
    message = _FIELD_WORD.sub(lambda match: _FLAGS[match.group(1)], exc.message)
    if exc.field == "name" and message.startswith("name "):
        message = "--" + message
    return message


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload, sort_keys=True) if as_json else text)


def _parse_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


users = click.Group("users", help="Create and disable users.")
workspaces = click.Group("workspaces", help="Create workspaces.")
members = click.Group("members", help="Add and remove workspace members.")
invitations_cli = click.Group("invitations",
                              help="List, revoke and accept invitations to workspaces.")
keys_cli = click.Group("keys", help="Create, list, revoke and rotate API keys.")
tokens_cli = click.Group("tokens", help="Maintain the access-token table.")
legacy_cli = click.Group("legacy", help="Import, report on and migrate legacy workspace keys.")
audit_cli = click.Group("audit", help="Export, seal, verify and prune the audit trail.")
ratelimit_cli = click.Group("ratelimit", help="Lift rate-limit lock-outs.")
config_cli = click.Group("config", help="Check the configuration.")
db_cli = click.Group("db", help="Upgrade, downgrade and show the database schema.")

# Exit codes beyond click's (1 a command's error, 2 a usage or configuration error).
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_KEYS_EXPIRING = 4  # `keys expiring` found at least one key: for cron and monitoring


@users.command("create")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@transactional
def users_create(email: str, as_json: bool) -> None:
    """Create an active user."""
    user = accounts.create_user(db.session, email, Actor.cli())
    _emit(as_json, {"id": str(user.id), "email": user.email, "status": user.status},
          f"created user {user.email} (id {user.id})")


@users.command("disable")
@click.argument("email")
@transactional
def users_disable(email: str) -> None:
    """Disable a user: their keys and tokens stop working at once."""
    user = accounts.get_user_by_email(db.session, email)
    accounts.disable_user(db.session, user, Actor.cli())
    click.echo(f"disabled {user.email}; their keys and tokens stop working now")


@workspaces.command("create")
@click.argument("slug")
@click.option("--owner", required=True, help="Email of an existing user.")
@click.option("--name", default=None)
@click.option("--json", "as_json", is_flag=True)
@transactional
def workspaces_create(slug: str, owner: str, name: str | None, as_json: bool) -> None:
    """Create a workspace with its first owner."""
    user = accounts.get_user_by_email(db.session, owner)
    workspace = accounts.create_workspace(db.session, slug, user, Actor.cli(), name=name)
    _emit(as_json, {"id": str(workspace.id), "slug": workspace.slug, "owner": user.email},
          f"created workspace {workspace.slug} owned by {user.email}")


@members.command("add")
@click.argument("slug")
@click.argument("email")
@click.option("--role", default="member", show_default=True,
              help="owner, admin or member.")
@transactional
def members_add(slug: str, email: str, role: str) -> None:
    """Add an existing user to a workspace with a role."""
    workspace = accounts.get_workspace(db.session, slug)
    user = accounts.get_user_by_email(db.session, email)
    membership = accounts.add_member(db.session, workspace, user, role, Actor.cli())
    click.echo(f"added {user.email} to {workspace.slug} as {membership.role}")


@members.command("remove")
@click.argument("slug")
@click.argument("email")
@transactional
def members_remove(slug: str, email: str) -> None:
    """Remove a member; their keys in the workspace are revoked."""
    workspace = accounts.get_workspace(db.session, slug)
    user = accounts.get_user_by_email(db.session, email)
    membership = accounts.get_membership(db.session, workspace, user)
    if membership is None:
        raise click.ClickException(f"{user.email} is not a member of {workspace.slug}")
    revoked = accounts.remove_member(db.session, membership, Actor.cli())
    click.echo(f"removed {user.email} from {workspace.slug}; {revoked} key(s) revoked")


@invitations_cli.command("list")
@click.option("--workspace", "slug", required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@transactional
def invitations_list(slug: str, as_json: bool) -> None:
    """Pending invitations of a workspace."""
    workspace = accounts.get_workspace(db.session, slug)
    for invitation in invitation_service.list_pending(db.session, workspace.id):
        payload = invitation_json(invitation)
        _emit(as_json, payload, f"{payload['id']}  {payload['email']}  {payload['role']}  "
                                f"expires {payload['expires_at']}")


@invitations_cli.command("accept")
@click.argument("invitation_id")
@click.option("--email", required=True, help="The invited address (its user must exist).")
@transactional
def invitations_accept(invitation_id: str, email: str) -> None:
    """Accept an invitation on behalf of its invitee, as the operator."""
    invitation = invitation_service.get_invitation(db.session, invitation_id, lock=True)
    user = accounts.get_user_by_email(db.session, email)
    membership = invitation_service.accept(db.session, invitation, user, Actor.cli())
    click.echo(f"{user.email} joined {invitation.workspace.slug} as {membership.role}")


@invitations_cli.command("revoke")
@click.argument("invitation_id")
@transactional
def invitations_revoke(invitation_id: str) -> None:
    """Withdraw an invitation that was not accepted."""
    invitation = invitation_service.get_invitation(db.session, invitation_id, lock=True)
    invitation_service.revoke(db.session, invitation, Actor.cli())
    click.echo(f"revoked invitation {invitation.public_id} for {invitation.email}")


def _rate_limit_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """`none` (or "") clears; anything else is validated by the key service."""
    if value is None:
        return ...
    return None if value.strip().lower() in ("", "none", "null") else value


RATE_LIMIT_HELP = ('The key\'s own request limit, e.g. "1000 per minute" (replaces the '
                   'server\'s per-key defaults); "none" clears it.')

RESOURCE_HELP = ("Restrict the key to this resource URI (repeat for several); its scopes must "
                 "be the resources' own (plus introspect).")
INTROSPECTS_FOR_HELP = ("Make the key this resource's server: its introspection answers "
                        "inactive for tokens not meant for the resource.")


@keys_cli.command("create")
@click.option("--workspace", "slug", required=True)
@click.option("--user", "email", required=True)
@click.option("--name", default="default", show_default=True)
@click.option("--scope", "scope", default="", help='Space separated, e.g. "keys:read introspect".')
@click.option("--expires-at", callback=_parse_time, help="RFC 3339, e.g. 2030-01-01T00:00:00Z.")
@click.option("--expires-in-days", type=click.IntRange(min=1))
@click.option("--rate-limit", callback=_rate_limit_option, help=RATE_LIMIT_HELP)
@click.option("--resource", "resources", multiple=True, help=RESOURCE_HELP)
@click.option("--introspects-for", "introspects_for", help=INTROSPECTS_FOR_HELP)
@click.option("--json", "as_json", is_flag=True)
@transactional
def keys_create(slug: str, email: str, name: str, scope: str, expires_at: Any,
                expires_in_days: int | None, rate_limit: Any, resources: tuple[str, ...],
                introspects_for: str | None, as_json: bool) -> None:
    """Create a key; its secret is printed once."""
    workspace = accounts.get_workspace(db.session, slug)
    user = accounts.get_user_by_email(db.session, email)
    created = keys.create_key(db.session, workspace, user, Actor.cli(), name=name, scopes=scope,
                              expires_at=expires_at, expires_in_days=expires_in_days,
                              rate_limit=None if rate_limit is ... else rate_limit,
                              resources=list(resources) if resources else None,
                              introspects_for=introspects_for, issuer=_issuer())
    payload = {**key_json(created.key), "client_secret": created.client_secret}
    _emit(as_json, payload,
          f"client_id:     {created.key.client_id}\n"
          f"client_secret: {created.client_secret}\n"
          f"scopes:        {created.key.scopes or '(none)'}\n"
          f"expires_at:    {isoformat(created.key.expires_at) or 'never'}\n"
          + _resource_lines(created.key)
          + "The secret is shown once; store it now.")


def _issuer() -> str | None:
    """The configured issuer, which names keymint's own API resource (<issuer>/api/v1)."""
    return current_app.config.get("KEYMINT_ISSUER") or None


def _resource_lines(key: Any) -> str:
    """The resource restriction and binding of a key, for the text output; empty when none."""
    lines = ""
    if key.resource_list is not None:
        lines += f"resources:     {' '.join(key.resource_list) or '(none)'}\n"
    if key.introspects_for:
        lines += f"introspects_for: {key.introspects_for}\n"
    return lines


def _print_keys(rows: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"keys": [key_json(k) for k in rows]}, sort_keys=True))
        return
    for k in rows:
        data = key_json(k)
        click.echo(f"{data['client_id']}  {data['state']:<8} {data['workspace']:<20} "
                   f"{data['owner']['email']:<30} {data['name']!r} "
                   f"expires={data['expires_at'] or 'never'}")


@keys_cli.command("list")
@click.option("--workspace", "slug", default=None)
@click.option("--user", "email", default=None)
@click.option("--state", type=click.Choice(["active", "expired", "revoked"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@transactional(writes=False)
def keys_list(slug: str | None, email: str | None, state: str | None, as_json: bool) -> None:
    """List keys, newest first (never a secret)."""
    workspace_id = accounts.get_workspace(db.session, slug).id if slug else None
    user_id = accounts.get_user_by_email(db.session, email).id if email else None
    _print_keys(keys.list_keys(db.session, workspace_id=workspace_id, user_id=user_id,
                               state=state), as_json)


@keys_cli.command("expiring")
@click.option("--within-days", type=click.IntRange(min=1, max=36500), required=True)
@click.option("--workspace", "slug", default=None, help="Only this workspace.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def keys_expiring(within_days: int, slug: str | None, as_json: bool) -> None:
    """Active keys whose expiry falls within the next N days, soonest first (revoked and
    expired ones excluded). Exit code 4 when it lists any, 0 when none: for cron or a
    monitoring check."""
    found = _keys_expiring(within_days, slug, as_json)
    if found:
        sys.exit(EXIT_KEYS_EXPIRING)


@transactional(writes=False)
def _keys_expiring(within_days: int, slug: str | None, as_json: bool) -> int:
    workspace_id = accounts.get_workspace(db.session, slug).id if slug else None
    rows = keys.list_keys(db.session, workspace_id=workspace_id,
                          expiring_within=timedelta(days=within_days))
    _print_keys(rows, as_json)
    return len(rows)


@keys_cli.command("update")
@click.argument("client_id")
@click.option("--name", default=None, help="A new name.")
@click.option("--scope", "scope", default=None,
              help="Narrow the scopes to these (space separated; never widens); live tokens "
                   "holding a dropped scope are revoked.")
@click.option("--rate-limit", callback=_rate_limit_option, help=RATE_LIMIT_HELP)
@click.option("--resource", "resources", multiple=True,
              help=RESOURCE_HELP + " Only ever narrows; live tokens for a dropped resource "
                   "are revoked.")
@click.option("--introspects-for", "introspects_for",
              help=INTROSPECTS_FOR_HELP + " Set once; never moved or cleared.")
@click.option("--json", "as_json", is_flag=True)
@transactional
def keys_update(client_id: str, name: str | None, scope: str | None, rate_limit: Any,
                resources: tuple[str, ...], introspects_for: str | None,
                as_json: bool) -> None:
    """Rename a key, narrow its scopes or resources, set its own rate limit or bind it to a
    resource (audited as key.updated with old and new)."""
    key = keys.get_key(db.session, client_id, lock=True)
    keys.update_key(db.session, key, key.workspace, Actor.cli(), name=name, scopes=scope,
                    rate_limit=rate_limit, resources=list(resources) if resources else None,
                    introspects_for=introspects_for, issuer=_issuer())
    _emit(as_json, key_json(key),
          f"updated {key.client_id}: name={key.name!r} rate_limit={key.rate_limit or 'default'}"
          f"\n{_resource_lines(key)}".rstrip("\n"))


@keys_cli.command("revoke")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@transactional
def keys_revoke(client_id: str, as_json: bool) -> None:
    """Revoke a key with all its secrets and tokens."""
    key = keys.revoke_key(db.session, keys.get_key(db.session, client_id), Actor.cli())
    _emit(as_json, key_json(key),
          f"revoked {key.client_id}; its secrets and tokens no longer work")


@keys_cli.command("rotate")
@click.argument("client_id")
@click.option("--grace-period", type=int, default=keys.DEFAULT_GRACE_PERIOD, show_default=True,
              help="Seconds the previous secret keeps working (0 ends it now, max 604800).")
@click.option("--json", "as_json", is_flag=True)
@transactional
def keys_rotate(client_id: str, grace_period: int, as_json: bool) -> None:
    """New secret (shown once); the previous one lives for the grace period."""
    rotated = keys.rotate_secret(db.session, keys.get_key(db.session, client_id), Actor.cli(),
                                 grace_period)
    previous = isoformat(rotated.previous_expires_at)
    _emit(as_json,
          {**key_json(rotated.key), "client_secret": rotated.client_secret,
           "previous_secret_expires_at": previous},
          f"client_id:     {rotated.key.client_id}\n"
          f"client_secret: {rotated.client_secret}\n"
          f"previous secret works until: {previous or 'no longer valid'}\n"
          "The secret is shown once; store it now.")


@tokens_cli.command("purge")
@click.option("--retention-days", type=click.IntRange(min=0), default=None,
              help="Keep expired/revoked rows this long (default KEYMINT_TOKEN_RETENTION_DAYS).")
@click.option("--batch-size", type=click.IntRange(min=1, max=100000), default=5000,
              show_default=True, help="Rows per transaction; smaller holds row locks shorter.")
@click.option("--pause", type=click.FloatRange(min=0, max=60), default=0.0, show_default=True,
              help="Seconds to sleep between batches, to leave the database to live traffic.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@with_appcontext
def tokens_purge(retention_days: int | None, batch_size: int, pause: float,
                 progress: bool | None) -> None:
    """Delete tokens that expired or were revoked more than the retention window ago.

    Safe while traffic flows: one short transaction per batch, rows locked by a request are
    skipped (and purged next run), running twice deletes nothing more. Schedule it daily.
    """
    import time

    from flask import current_app

    from app.services import audit

    days = (current_app.config["KEYMINT_TOKEN_RETENTION_DAYS"]
            if retention_days is None else retention_days)
    cutoff = tokens.purge_cutoff(timedelta(days=days))
    estimate = tokens.count_purgeable(db.session, cutoff)
    db.session.rollback()  # the count's snapshot is not held while deleting
    show = sys.stderr.isatty() if progress is None else progress
    total, after = 0, 0
    with click.progressbar(length=estimate, label="purging tokens", file=sys.stderr,
                           hidden=not show) as bar:
        while True:
            batch = tokens.purge_batch(db.session, cutoff, after, batch_size)
            if batch.deleted:  # each batch commits with its own event: no deletion unaudited
                audit.record(db.session, "token.purged", Actor.cli(), workspace_id=None,
                             details={"count": batch.deleted, "retention_days": days,
                                      "cutoff": isoformat(cutoff)})
            db.session.commit()
            if batch.last_id is None:
                break
            after = batch.last_id
            total += batch.deleted
            bar.update(batch.deleted)
            if pause:
                time.sleep(pause)
    click.echo(f"purged {total} token row(s) expired or revoked before {isoformat(cutoff)} "
               f"(retention {days} day(s))")


@legacy_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def legacy_import(file: str, as_json: bool) -> None:
    """Import legacy keys from a CSV with the header workspace,key,label.

    All or nothing: if any line is wrong, every failing line is listed and nothing is
    imported. Re-importing a key already imported for its workspace changes nothing.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        with open(file, encoding="utf-8-sig", newline="") as stream:
            rows, errors = import_service.parse_csv(stream)
        with click.progressbar(length=len(rows), label="checking and importing",
                               file=sys.stderr) as bar:
            result = import_service.import_keys(db.session, rows, Actor.cli(),
                                                progress=bar.update, errors=errors)
        db.session.commit()
    except import_service.ImportFailed as exc:
        db.session.rollback()
        if as_json:
            click.echo(json.dumps({"imported": 0, "errors": [
                {"line": line, "error": reason} for line, reason in exc.errors]},
                sort_keys=True))
        else:
            for line, reason in exc.errors:
                click.echo(f"line {line}: {reason}", err=True)
        raise click.ClickException(exc.message) from None
    except UnicodeDecodeError:
        db.session.rollback()
        raise click.ClickException(f"{file} is not UTF-8 text; nothing was imported") from None
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException("another import added some of these keys at the same "
                                   "time; nothing was imported, run it again") from None
    _emit(as_json, {"imported": result.created, "unchanged": result.unchanged,
                    "per_workspace": result.per_workspace, "errors": []},
          f"imported {result.created} legacy key(s), {result.unchanged} already present")


@legacy_cli.command("report")
@click.option("--workspace", "slug", default=None)
@click.option("--flush-wait", is_flag=True,
              help="First wait one flush interval (KEYMINT_LEGACY_FLUSH_INTERVAL + 1 s), so "
                   "that the counts include every use made before the command started.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def legacy_report(slug: str | None, flush_wait: bool, as_json: bool) -> None:
    """Per workspace: legacy keys, uses, last use, migrated, disabled, rejections.

    Serving processes count uses in memory and write them every KEYMINT_LEGACY_FLUSH_INTERVAL
    seconds (sooner at KEYMINT_LEGACY_FLUSH_THRESHOLD uses, and at shutdown): the counts and
    last-use times may be that many seconds behind; --flush-wait waits that long first.
    """
    import time

    interval = current_app.config["KEYMINT_LEGACY_FLUSH_INTERVAL"]
    if flush_wait:
        click.echo(f"waiting {interval + 1} s for the serving processes' next flush...",
                   err=True)
        time.sleep(interval + 1)
    _legacy_report(slug, as_json, 0 if flush_wait else interval)


@transactional(writes=False)
def _legacy_report(slug: str | None, as_json: bool, behind: int) -> None:
    workspace_id = accounts.get_workspace(db.session, slug).id if slug else None
    rows = legacy_service.report(db.session, workspace_id)
    if as_json:
        click.echo(json.dumps({"stale_up_to_seconds": behind, "workspaces": [
            {"workspace": r.workspace, "keys": r.keys, "uses": r.uses,
             "last_used_at": isoformat(r.last_used_at), "migrated": r.migrated,
             "disabled": r.disabled, "rejections": r.rejections,
             "last_rejected_at": isoformat(r.last_rejected_at)} for r in rows]},
            sort_keys=True))
        return
    click.echo(f"{'workspace':<24} {'keys':>6} {'uses':>10} {'last used':<21} "
               f"{'migrated':>8} {'disabled':>8} {'rejected':>8}")
    for r in rows:
        click.echo(f"{r.workspace:<24} {r.keys:>6} {r.uses:>10} "
                   f"{isoformat(r.last_used_at) or 'never':<21} {r.migrated:>8} "
                   f"{r.disabled:>8} {r.rejections:>8}")
    if behind:
        click.echo(f"uses and last use may be up to {behind} s behind (serving processes write "
                   "them every KEYMINT_LEGACY_FLUSH_INTERVAL); --flush-wait waits for the next "
                   "write", err=True)


@legacy_cli.command("migrate")
@click.option("--workspace", "slug", default=None,
              help="Every legacy key of this workspace (with --label: the workspace to look in).")
@click.option("--label", default=None, help="Only the legacy key of --workspace with this label.")
@click.option("--key-id", "key_id", type=click.IntRange(min=1), default=None,
              help="Only this legacy key (its id in `GET /api/v1/legacy-keys`).")
@click.option("--owner", "email", required=True, help="The member who will own the new keys.")
@click.option("--scope", "scope", default="",
              help="Scopes of the new keys, space separated (default: none). Management "
                   "scopes only for an admin or owner.")
@click.option("--disable-legacy", is_flag=True,
              help="Disable the migrated legacy keys now instead of at the sunset.")
@click.option("--json", "as_json", is_flag=True)
@transactional
def legacy_migrate(slug: str | None, label: str | None, key_id: int | None, email: str,
                   scope: str, disable_legacy: bool, as_json: bool) -> None:
    """Create one API key per legacy key of a workspace, or for one legacy key (--key-id, or
    --workspace with --label); secrets are printed once."""
    if key_id is not None and label is not None:
        raise click.UsageError("give --key-id or --label, not both")
    if key_id is None and slug is None:
        raise click.UsageError("give --workspace (all its legacy keys, or one with --label) "
                               "or --key-id")
    workspace = accounts.get_workspace(db.session, slug) if slug else None
    owner = accounts.get_user_by_email(db.session, email)
    if key_id is None and label is None:
        result = migration_service.migrate_workspace(db.session, workspace, owner, Actor.cli(),
                                                     scopes=scope, disable=disable_legacy)
    else:
        row = migration_service.find_key(db.session, key_id=key_id, workspace=workspace,
                                         label=label)
        workspace = row.workspace
        result = migration_service.migrate_key(db.session, row, owner, Actor.cli(),
                                               scopes=scope, disable=disable_legacy)
    if as_json:
        click.echo(json.dumps({
            "workspace": workspace.slug,
            "migrated": [{"legacy_key_id": str(m.legacy.id), "label": m.legacy.label,
                          **key_json(m.created.key),
                          "client_secret": m.created.client_secret}
                         for m in result.migrated],
            "already_migrated": [{"legacy_key_id": str(r.id), "client_id": r.migrated_to}
                                 for r in result.already_migrated],
            "skipped_disabled": [str(r.id) for r in result.skipped_disabled],
            "disabled": [str(r.id) for r in result.disabled],
        }, sort_keys=True))
        return
    for m in result.migrated:
        click.echo(f"legacy key {m.legacy.id} ({m.legacy.label or 'no label'}) -> "
                   f"client_id {m.created.key.client_id}  "
                   f"client_secret {m.created.client_secret}")
    for r in result.already_migrated:
        if key_id is not None or label is not None:
            click.echo(f"legacy key {r.id} was already migrated to {r.migrated_to}")
    click.echo(f"{len(result.migrated)} new key(s) owned by {owner.email}; "
               f"{len(result.already_migrated)} already migrated; "
               f"{len(result.skipped_disabled)} skipped (disabled); "
               f"{len(result.disabled)} legacy key(s) disabled now.")
    if result.migrated:
        click.echo("The secrets are shown once; store them now.")


# --- audit --------------------------------------------------------------------------------

# Spreadsheet apps run a cell starting with one of these as a formula (CSV injection);
# user agents and names are caller-controlled, so such cells get a leading quote.
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PROGRESS_EVERY = 1000


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = str(value)
    return "'" + text if text.startswith(_CSV_FORMULA_START) else text


def _export_rows(stream: Any, rows: Any, fmt: str, on_batch: Callable[[int], None]) -> int:
    written = 0
    writer = None
    for row in rows:
        data = audit_event_json(row)
        if fmt == "csv":
            if writer is None:
                writer = csv.writer(stream, lineterminator="\n")
                writer.writerow(list(data))
            writer.writerow([_csv_cell(v) for v in data.values()])
        else:
            stream.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        written += 1
        if written % _PROGRESS_EVERY == 0:
            on_batch(_PROGRESS_EVERY)
    if fmt == "csv" and writer is None:
        csv.writer(stream, lineterminator="\n").writerow(audit_query.CSV_HEADER)
    on_batch(written % _PROGRESS_EVERY)
    return written


@audit_cli.command("export")
@click.option("--workspace", "slug", default=None, help="Only this workspace's events.")
@click.option("--since", callback=_parse_time, help="RFC 3339; events at or after it.")
@click.option("--until", callback=_parse_time, help="RFC 3339; events before it.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (atomically, via FILE.partial) instead of stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr; default: when stderr is a terminal and the "
                   "data does not go to it.")
@with_appcontext
def audit_export(slug: str | None, since: Any, until: Any, fmt: str, output: str | None,
                 progress: bool | None) -> None:
    """Stream audit events, oldest first, in constant memory (jsonl or csv)."""
    try:
        workspace_id = accounts.get_workspace(db.session, slug).id if slug else None
        where = audit_query.EventFilter(workspace_id=workspace_id, since=since, until=until)
    except DomainError as exc:
        raise click.ClickException(cli_message(exc)) from None
    if progress is None:
        progress = sys.stderr.isatty() and (output is not None or not sys.stdout.isatty())
    target = output + ".partial" if output else None
    stream = (open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115
              if target else sys.stdout)
    try:
        rows = audit_query.stream(db.session, where)
        if progress:
            total = audit_query.count(db.session, where)
            with click.progressbar(length=total, label="exporting audit events",
                                   file=sys.stderr) as bar:
                written = _export_rows(stream, rows, fmt, bar.update)
        else:
            written = _export_rows(stream, rows, fmt, lambda _n: None)
    except BaseException:
        if target:
            stream.close()
            os.unlink(target)
        raise
    finally:
        db.session.rollback()
    if target:
        stream.close()
        os.replace(target, output)
        click.echo(f"exported {written} event(s) to {output}", err=True)
    else:
        stream.flush()


def _audit_key() -> bytes | None:
    """KEYMINT_AUDIT_HMAC_KEY (keyed chain mode), or None (unkeyed)."""
    secret = current_app.config.get("KEYMINT_AUDIT_HMAC_KEY")
    return secret.reveal() if secret is not None else None


def _mode_text(report: audit_chain.VerifyReport) -> str:
    if report.mode == audit_chain.MODE_KEYED:
        return f"keyed mode (HMAC-SHA256, key id {report.key_id})"
    return "unkeyed mode (SHA-256)"


@audit_cli.command("seal")
@click.option("--max-events", type=click.IntRange(min=1, max=100000),
              default=audit_chain.MAX_EVENTS_PER_SEAL, show_default=True,
              help="Events per seal; a backlog becomes several seals.")
@with_appcontext
def audit_seal(max_events: int) -> None:
    """Seal every unsealed event into the hash chain (run it every minute).

    With KEYMINT_AUDIT_HMAC_KEY set the seals are keyed (HMAC-SHA256).
    """
    key = _audit_key()
    seals = events = 0
    switched_after: int | None = None
    try:
        bound = audit_chain.newest_event_id(db.session)  # a run ends even under load
        before = audit_chain.head(db.session)
        if key is not None and before is not None and \
                audit_chain.sealed_with(before.details) is None:
            switched_after = before.id  # this run's first seal switches the chain to keyed
        while (sealed := audit_chain.seal(db.session, max_events=max_events,
                                          up_to_id=bound, key=key)) is not None:
            seals += 1
            events += sealed.event_count
            db.session.commit()  # one short transaction per seal
        latest = audit_chain.head(db.session)
        head_hash = latest.hash if latest else audit_chain.GENESIS_HASH
    except DomainError as exc:
        raise click.ClickException(cli_message(exc)) from None
    finally:
        db.session.rollback()
    click.echo(f"sealed {events} event(s) in {seals} seal(s); chain head {head_hash}")
    if switched_after is not None and seals:
        click.echo(f"the chain is keyed from seal {switched_after + 1} on; seals up to "
                   f"{switched_after} were sealed without a key: verify with `keymint audit "
                   f"verify --unkeyed-until {switched_after}` (keep that number with your "
                   "anchors)")


@audit_cli.command("verify")
@click.option("--anchor", default=None,
              help="A chain head printed earlier; fails if the chain no longer contains it.")
@click.option("--unkeyed-until", type=click.IntRange(min=1), default=None,
              help="Keyed mode only: the last seal made before the chain switched to "
                   "KEYMINT_AUDIT_HMAC_KEY (printed by that `audit seal`); seals up to it are "
                   "checked as plain SHA-256, any later unkeyed seal fails.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def audit_verify(anchor: str | None, unkeyed_until: int | None, as_json: bool) -> None:
    """Check the whole chain; exit 1 naming the first bad event or seal.

    Keyed mode (HMAC-SHA256) when KEYMINT_AUDIT_HMAC_KEY is set, unkeyed (SHA-256) otherwise.
    """
    try:
        report = audit_chain.verify(db.session, anchor=anchor, key=_audit_key(),
                                    unkeyed_until=unkeyed_until)
    finally:
        db.session.rollback()
    payload = {"ok": report.ok, "seals": report.seals, "events": report.events,
               "pruned_events": report.pruned_events, "unsealed": report.unsealed,
               "head": report.head_hash, "problem": report.problem,
               "seal_id": report.seal_id, "event_id": report.event_id,
               "mode": report.mode, "key_id": report.key_id,
               "keyed_seals": report.keyed_seals, "unkeyed_seals": report.unkeyed_seals}
    if as_json:
        click.echo(json.dumps(payload, sort_keys=True))
    elif report.ok:
        click.echo(f"audit chain OK: {report.seals} seal(s), {report.events} event(s) "
                   f"verified, {report.pruned_events} pruned, {report.unsealed} not yet "
                   f"sealed; head {report.head_hash}; checked in {_mode_text(report)}, "
                   f"{report.keyed_seals} keyed and {report.unkeyed_seals} unkeyed seal(s)")
    else:
        click.echo(f"audit chain BROKEN: {report.problem} (checked in {_mode_text(report)})",
                   err=True)
    if not report.ok:
        sys.exit(1)


@audit_cli.command("prune")
@click.option("--before", required=True, callback=_parse_time,
              help="RFC 3339; remove sealed events older than this (whole seals only).")
@with_appcontext
def audit_prune(before: Any) -> None:
    """Delete sealed events older than --before; a prune record keeps the chain verifiable."""
    if before > utcnow():
        raise click.BadParameter("must not be in the future", param_hint="--before")
    seals = events = 0
    try:
        while (result := audit_chain.prune(db.session, before, key=_audit_key())) is not None:
            seals += result.seals
            events += result.events
            db.session.commit()  # one short transaction per batch of seals
        unsealed_old = audit_query.count(db.session, audit_query.EventFilter(until=before),
                                         unsealed_only=True)
    except DomainError as exc:
        raise click.ClickException(cli_message(exc)) from None
    finally:
        db.session.rollback()
    click.echo(f"pruned {events} event(s) of {seals} seal(s) older than {isoformat(before)}")
    if unsealed_old:
        click.echo(f"{unsealed_old} older event(s) are not sealed yet and were kept; run "
                   "`keymint audit seal` first", err=True)


@ratelimit_cli.command("clear")
@click.option("--client-id", default=None, help="A key's budgets and its failures from any IP.")
@click.option("--ip", default=None, help="A client IP's limits and its failures.")
@transactional
def ratelimit_clear(client_id: str | None, ip: str | None) -> None:
    """Delete the rate-limit counters of one client_id or one client IP (audited)."""
    from app.web import rate_limits

    if (client_id is None) == (ip is None):
        raise click.UsageError("give exactly one of --client-id or --ip")
    if client_id is not None and not credentials.is_client_id(client_id):
        raise click.BadParameter("not a client_id (key_ + 24 characters)",
                                 param_hint="--client-id")
    if ip is not None:
        try:
            canonical = str(ipaddress.ip_address(ip))
        except ValueError:
            raise click.BadParameter("not an IP address", param_hint="--ip") from None
    if ip is None:
        cleared = rate_limits.clear_counters(client_id=client_id)
    else:  # as typed and in canonical form: the limiter keys by the server's peer address
        cleared = sum(rate_limits.clear_counters(ip=form) for form in {ip, canonical})
    workspace_id = keys.workspace_of(db.session, client_id) if client_id else None
    audit.record(db.session, "ratelimit.cleared", Actor.cli(), workspace_id=workspace_id,
                 target_type="key" if client_id else "ip", target_id=client_id or ip,
                 details={"counters_cleared": cleared})
    click.echo(f"cleared {cleared} rate-limit counter(s) of {client_id or ip}")


def _check_bind(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from app.runtime.server import parse_bind

    try:
        parse_bind(value)
    except ValueError:
        raise click.BadParameter("expected HOST:PORT, [IPv6]:PORT or unix:PATH") from None
    return value


@click.command("serve")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, callback=_check_bind,
              help="HOST:PORT, [IPv6]:PORT or unix:PATH.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=None,
              envvar="KEYMINT_WORKERS", show_envvar=True,
              help="Worker processes (default: one per CPU core, os.cpu_count()).")
@with_appcontext
def serve(bind: str, workers: int | None) -> None:
    """Serve keymint with the production WSGI server (Granian), as benchmarked.

    Each worker process runs 2 Python threads; SIGTERM or SIGINT drains in-flight requests
    (up to 30 s) and runs the shutdown flushes. BIND is HOST:PORT, [IPv6]:PORT or unix:PATH;
    anything but a loopback address needs KEYMINT_ISSUER and KEYMINT_SECRET_KEY.
    """
    import logging

    from flask import current_app

    from app import create_app
    from app.config import is_loopback_host
    from app.runtime import server

    address = server.parse_bind(bind).get("address")
    loopback = bool(address and is_loopback_host(address))
    if not current_app.config["KEYMINT_ISSUER"] and not loopback:
        # Without it the issuer comes from each request's Host header, which only a
        # loopback-only server can trust.
        raise click.ClickException(
            f"KEYMINT_ISSUER must be set to serve on {bind} (not a loopback address), "
            "e.g. KEYMINT_ISSUER=https://auth.example.com")
    if not current_app.config.get("SECRET_KEY") and not loopback:
        # The web console signs its forms with it; every node needs the same one.
        raise click.ClickException(
            f"KEYMINT_SECRET_KEY must be set to serve on {bind} (not a loopback address), "
            "e.g. KEYMINT_SECRET_KEY=$(python -c \"import secrets; "
            "print(secrets.token_urlsafe(32))\")")
    startup_log = logging.getLogger("keymint.startup")
    startup_log.info("effective configuration %s",
                     json.dumps(summary(current_app.config), sort_keys=True))
    from sqlalchemy.exc import SQLAlchemyError

    try:
        for warning in startup_warnings():
            startup_log.warning("%s", warning)
    except SQLAlchemyError as exc:  # not fatal here: /readyz reports the database
        startup_log.warning("start-up checks skipped: %s", _database_problem(exc))
    if address and not loopback and current_app.config.get("KEYMINT_METRICS_TOKEN") is None:
        # Open by default (a scraper on a private network needs nothing), but say so once.
        logging.getLogger("keymint.server").warning(
            "serving on %s without KEYMINT_METRICS_TOKEN: /metrics is open to anyone who can "
            "reach this address; set KEYMINT_METRICS_TOKEN or block /metrics at the proxy",
            bind)
    server.serve_wsgi(create_app, bind=bind, workers=workers or os.cpu_count() or 1)


DEMO_EMAIL = "demo@example.com"
DEMO_WORKSPACE = "demo"
DEMO_SCOPES = "introspect keys:read keys:write audit:read members:read members:write"


@click.command("demo")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--force", is_flag=True,
              help="Run against a database that is not SQLite (e.g. production PostgreSQL).")
@transactional
def demo(port: int, force: bool) -> None:
    """Create (or reuse) a demo user and workspace, and a fresh demo key; print how to use it.

    For a local trial on SQLite: it refuses any other database unless --force, so that a demo
    user with a broad key never lands in production by accident.
    """
    from app.services.errors import NotFound

    if db.engine.dialect.name != "sqlite" and not force:
        raise click.ClickException(
            f"keymint demo creates a demo user and a key with management scopes; the database "
            f"is {db.engine.dialect.name}, not SQLite: pass --force if this is really meant")

    try:
        user = accounts.get_user_by_email(db.session, DEMO_EMAIL)
    except NotFound:
        user = accounts.create_user(db.session, DEMO_EMAIL, Actor.cli())
    try:
        workspace = accounts.get_workspace(db.session, DEMO_WORKSPACE)
    except NotFound:
        workspace = accounts.create_workspace(db.session, DEMO_WORKSPACE, user, Actor.cli(),
                                              name="Demo workspace")
    created = keys.create_key(db.session, workspace, user, Actor.cli(), name="quickstart",
                              scopes=DEMO_SCOPES, expires_in_days=30)
    cid, secret = created.key.client_id, created.client_secret
    base = f"http://127.0.0.1:{port}"
    click.echo(f"""
Demo user {user.email}, workspace {workspace.slug}, key {cid} (expires in 30 days).
The secret is shown only this once; store it now:

  client_id:     {cid}
  client_secret: {secret}

Put them in the environment (`read -rs` keeps the secret out of your shell history):
  export KEYMINT_CLIENT_ID={cid}
  read -rs KEYMINT_CLIENT_SECRET && export KEYMINT_CLIENT_SECRET   # paste the secret, Enter

Get an access token (client_credentials grant):
  curl -s -u "$KEYMINT_CLIENT_ID:$KEYMINT_CLIENT_SECRET" -d grant_type=client_credentials \\
    {base}/oauth/token

Then, with TOKEN set to its access_token:
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/me
  curl -s -u "$KEYMINT_CLIENT_ID:$KEYMINT_CLIENT_SECRET" -d "token=$TOKEN" {base}/oauth/introspect
  curl -s -u "$KEYMINT_CLIENT_ID:$KEYMINT_CLIENT_SECRET" -d "token=$TOKEN" {base}/oauth/rotate
  curl -s -u "$KEYMINT_CLIENT_ID:$KEYMINT_CLIENT_SECRET" -d "token=$TOKEN" {base}/oauth/revoke

The web console ({base}/console/): sign in with a one-time link (valid 15 minutes) from
  keymint console login-link {user.email} --base-url {base}
""")


def startup_warnings() -> list[str]:
    """What an operator should hear about at start-up (logged by `serve`, printed by
    `config check`): a legacy sunset that passed or comes within 30 days while legacy keys
    are still enabled; a console without its KEYMINT_SECRET_KEY."""
    try:
        warning = legacy_service.sunset_warning(
            db.session, current_app.config["KEYMINT_LEGACY_SUNSET"], utcnow())
    finally:
        db.session.rollback()
    return ([warning] if warning else []) + console_warnings()


def console_warnings() -> list[str]:
    """The web console without a KEYMINT_SECRET_KEY: off (503), or on a per-process key."""
    config = current_app.config
    if not config.get("SECRET_KEY"):
        return ["KEYMINT_SECRET_KEY is not set: the web console (/console/) answers 503 until "
                "it is (docs/console.md)"]
    if config.get("CONSOLE_EPHEMERAL_SECRET_KEY") and not config.get("TESTING"):
        return ["KEYMINT_SECRET_KEY is not set: development mode signs console forms with a "
                "random key per process, so console sign-ins end at restart and forms fail "
                "across several workers (the quickstart keeps one in instance/secret_key)"]
    return []


@config_cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def config_check(as_json: bool) -> None:
    """Validate every setting and print the effective configuration, secrets masked.

    An invalid setting stops here (and every other command) with one line naming the variable
    and the accepted form, exit code 2. The database is reached once for the start-up
    warnings (exit code 3 when it cannot be).
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    settings = summary(current_app.config)
    try:
        warnings = startup_warnings()
    except (OperationalError, ProgrammingError) as exc:
        # Checking the settings comes before `db upgrade` on a new installation.
        if not _not_migrated(_database_detail(exc)):
            raise
        warnings = ["the database is reachable but not migrated yet: run `keymint db upgrade`"]
    if as_json:
        click.echo(json.dumps({"ok": True, "settings": settings, "warnings": warnings},
                              sort_keys=True))
        return
    width = max(len(name) for name in settings)
    for name, value in settings.items():
        shown = ("(not set)" if value is None else
                 json.dumps(value) if isinstance(value, list | bool) else value)
        click.echo(f"{name:<{width}}  {shown}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("configuration OK", err=True)


def _downgrade_reaches_base(revision: str) -> bool:
    """Whether `db downgrade REVISION` would end at base (no tables left)."""
    if revision == "base":
        return True
    if not (revision.startswith("-") and revision[1:].isdigit()):
        return False
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    with db.engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    current: Any = heads[0] if heads else None
    for _ in range(int(revision[1:])):
        if current is None:
            break
        current = script.get_revision(current).down_revision
    return current is None


@db_cli.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest, head)."""
    import flask_migrate

    flask_migrate.upgrade(revision=revision)


@db_cli.command("downgrade")
@click.argument("revision", default="-1")
@click.option("--yes", is_flag=True, help="Do not ask before a downgrade to base.")
@with_appcontext
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION (default: one revision, -1).

    Reaching base drops every keymint table and its data: it asks first, unless --yes.
    """
    import flask_migrate

    if _downgrade_reaches_base(revision) and not yes:
        click.confirm("This downgrade reaches base: it drops every keymint table and all its "
                      "data (users, keys, tokens, audit trail). Continue?", abort=True,
                      err=True)
    flask_migrate.downgrade(revision=revision)


@db_cli.command("current")
@click.option("-v", "--verbose", is_flag=True)
@with_appcontext
def db_current(verbose: bool) -> None:
    """Show the database's revision ("(head)" when it is the newest)."""
    import flask_migrate

    flask_migrate.current(verbose=verbose)


def register(app: Flask) -> None:
    from app import cli_admin  # noqa: F401 (adds the day-2 verbs to the groups above)

    for group in (users, workspaces, members, invitations_cli, keys_cli, tokens_cli, legacy_cli,
                  audit_cli, ratelimit_cli, serve, demo):
        app.cli.add_command(group)
    from app.cli_signing_keys import signing_keys_cli  # its own module (issue #18)
    app.cli.add_command(signing_keys_cli)

    from app.cli_resources import resources_cli  # imports this module: registered late

    app.cli.add_command(resources_cli)

    from app.cli_webhooks import webhooks_cli  # imports app.cli: loaded here, not at the top
    app.cli.add_command(webhooks_cli)
    from app.cli_console import console_cli  # imports this module: registered late

    app.cli.add_command(console_cli)
    app.cli.add_command(config_cli)
    app.cli.add_command(db_cli)  # replaces Flask-Migrate's: its developer verbs are `dev db`


def _dev_group() -> click.Group:
    """Flask's run/shell/routes and Flask-Migrate's full `db` (revision, stamp, merge...):
    for developers of keymint, hidden from `keymint --help`."""
    from flask.cli import routes_command, run_command, shell_command
    from flask_migrate.cli import db as migrate_db

    dev = click.Group("dev", hidden=True, help="Developer commands (Flask and Flask-Migrate).")
    for command in (run_command, shell_command, routes_command):
        dev.add_command(command)
    dev.add_command(migrate_db, "db")
    return dev


def _load_app() -> Flask:
    """The app, or one line on stderr and exit 2 for an invalid setting."""
    from app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"keymint: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _database_detail(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _not_migrated(detail: str) -> bool:
    """SQLite's and PostgreSQL's words for a table that is not there."""
    return "no such table" in detail or ("relation" in detail and "does not exist" in detail)


def _database_problem(exc: Exception) -> str:
    """One line for an operator (inside the app context); the URL's password masked."""
    from app.config import mask_url

    detail = _database_detail(exc)
    if _not_migrated(detail):
        return f"the database is not migrated ({detail}); run `keymint db upgrade`"
    where = mask_url(current_app.config.get("SQLALCHEMY_DATABASE_URI"))
    return f"cannot use the database {where}: {detail}"


class KeymintGroup(click.Group):
    """`keymint`: the commands registered on the app (register() above), `dev` hidden.

    Unlike Flask's FlaskGroup it has no --app/--env-file/--debug options and no Flask or
    Flask-Migrate developer commands at the top; it turns an unreachable database into one
    line on stderr (exit code 3).
    """

    def _app(self, ctx: click.Context) -> Flask:
        return ctx.ensure_object(ScriptInfo).load_app()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._app(ctx).cli.list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._app(ctx).cli.get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except (OperationalError, InterfaceError, ProgrammingError) as exc:
            if isinstance(exc, ProgrammingError) and not _not_migrated(_database_detail(exc)):
                raise  # a bug, not the database's state: keep its traceback
            app = self._app(ctx)
            with app.app_context():
                message = _database_problem(exc)
            click.echo(f"keymint: {message}", err=True)
            sys.exit(EXIT_DATABASE)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keymint")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def build_cli() -> click.Group:
    """The `keymint` command group (main() runs it; tests drive it with click's runner)."""
    cli = KeymintGroup("keymint", help="keymint: OAuth 2.0 token server for API keys.\n\n"
                       "Settings come from KEYMINT_* environment variables; `keymint config "
                       "check` validates and prints them.")
    cli.add_command(_dev_group())
    return click.version_option(_version(), "--version", prog_name="keymint",
                                message="%(prog)s %(version)s")(cli)


def main() -> None:
    info = ScriptInfo(create_app=_load_app, set_debug_flag=False)
    sys.exit(build_cli().main(prog_name="keymint", obj=info))


if __name__ == "__main__":
    main()
