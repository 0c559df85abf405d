"""Day-2 `keymint` verbs: list and show users, workspaces, members and keys; enable users,
set roles, transfer ownership; legacy brownouts. Added to app/cli.py's groups by its
register()."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app

from app.api.members import member_json
from app.api.workspace import workspace_json
from app.cli import _parse_time, keys_cli, legacy_cli, members, transactional, users, workspaces
from app.clock import isoformat, utcnow
from app.extensions import db
from app.models import User
from app.serialize import key_json
from app.services import accounts, keys
from app.services import legacy as legacy_service
from app.services.audit import Actor
from app.services.errors import InvalidInput

JSON_HELP = "Print one JSON object."


def _user_json(user: User) -> dict[str, Any]:
    return {"id": str(user.id), "email": user.email, "status": user.status,
            "created_at": isoformat(user.created_at),
            "disabled_at": isoformat(user.disabled_at),
            "workspaces": [{"slug": m.workspace.slug, "role": m.role}
                           for m in sorted(user.memberships, key=lambda m: m.workspace.slug)]}


def _summary_json(summary: accounts.WorkspaceSummary) -> dict[str, Any]:
    workspace = summary.workspace
    return {"id": str(workspace.id), "slug": workspace.slug, "name": workspace.name,
            "created_at": isoformat(workspace.created_at), "owners": summary.owners,
            "members": summary.members, "active_keys": summary.active_keys}


@users.command("list")
@click.option("--status", type=click.Choice(["active", "disabled"]), default=None)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def users_list(status: str | None, as_json: bool) -> None:
    """Every user by email, with status and workspaces (role in each)."""
    rows = [_user_json(u) for u in accounts.list_users(db.session, status=status)]
    if as_json:
        click.echo(json.dumps({"users": rows}, sort_keys=True))
        return
    for row in rows:
        where = ", ".join(f"{w['slug']}({w['role']})" for w in row["workspaces"]) or "-"
        click.echo(f"{row['email']:<32} {row['status']:<9} {where}")


@users.command("enable")
@click.argument("email")
@transactional
def users_enable(email: str) -> None:
    """Re-enable a disabled user (audited as user.enabled): their keys work again."""
    user = accounts.get_user_by_email(db.session, email)
    was = user.status
    accounts.enable_user(db.session, user, Actor.cli())
    if was == user.status:
        click.echo(f"{user.email} is already active; nothing changed")
    else:
        click.echo(f"enabled {user.email}; their keys that are not revoked or expired work "
                   "again")


@workspaces.command("list")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def workspaces_list(as_json: bool) -> None:
    """Every workspace by slug, with owners, member count and active keys."""
    rows = [_summary_json(s) for s in accounts.summarize_workspaces(db.session)]
    if as_json:
        click.echo(json.dumps({"workspaces": rows}, sort_keys=True))
        return
    for row in rows:
        click.echo(f"{row['slug']:<24} members={row['members']:<4} "
                   f"active_keys={row['active_keys']:<5} owners={','.join(row['owners'])}")


@workspaces.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def workspaces_show(slug: str, as_json: bool) -> None:
    """One workspace: its policy (as GET /api/v1/workspace shows it), owners and counts."""
    (summary,) = accounts.summarize_workspaces(db.session, slug)
    payload = {**workspace_json(summary.workspace), **_summary_json(summary)}
    if as_json:
        click.echo(json.dumps(payload, sort_keys=True))
        return
    for name, value in payload.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{name:<28} {'-' if shown is None else shown}")


@members.command("list")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def members_list(slug: str, as_json: bool) -> None:
    """A workspace's members in joining order (the shape of GET /api/v1/members)."""
    workspace = accounts.get_workspace(db.session, slug)
    rows = [member_json(m) for m in accounts.list_members(db.session, workspace.id)]
    if as_json:
        click.echo(json.dumps({"workspace": workspace.slug, "members": rows}, sort_keys=True))
        return
    for row in rows:
        click.echo(f"{row['email']:<32} {row['role']:<7} {row['status']:<9} "
                   f"joined {row['joined_at']}")


@members.command("set-role")
@click.argument("slug")
@click.argument("email")
@click.argument("role", type=click.Choice(["owner", "admin", "member"]))
@transactional
def members_set_role(slug: str, email: str, role: str) -> None:
    """Change a member's role; the last owner cannot be demoted (audited)."""
    workspace = accounts.get_workspace(db.session, slug)
    user = accounts.get_user_by_email(db.session, email)
    membership = accounts.get_membership(db.session, workspace, user)
    if membership is None:
        raise click.ClickException(f"{user.email} is not a member of {workspace.slug}")
    old = membership.role
    accounts.change_role(db.session, membership, role, Actor.cli())
    click.echo(f"{user.email} in {workspace.slug}: {old} -> {membership.role}"
               if old != membership.role else f"{user.email} is already {old}; nothing changed")


@members.command("transfer-ownership")
@click.argument("slug")
@click.option("--from", "from_email", required=True, help="The current owner's email.")
@click.option("--to", "to_email", required=True, help="A member who becomes owner.")
@click.option("--keep-as", type=click.Choice(["admin", "member", "owner"]), default="admin",
              show_default=True, help="The previous owner's new role (owner: stay one).")
@transactional
def members_transfer_ownership(slug: str, from_email: str, to_email: str,
                               keep_as: str) -> None:
    """Make --to an owner, then move --from to --keep-as; never leaves no owner."""
    workspace = accounts.get_workspace(db.session, slug)
    current = accounts.get_user_by_email(db.session, from_email)
    new = accounts.get_user_by_email(db.session, to_email)
    accounts.transfer_ownership(db.session, workspace, current, new, Actor.cli(),
                                keep_as=keep_as)
    click.echo(f"{new.email} now owns {workspace.slug}; {current.email} is {keep_as}")


@keys_cli.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def keys_show(client_id: str, as_json: bool) -> None:
    """One key: owner, workspace, scopes, state, expiry, last use (never a secret)."""
    data = key_json(keys.get_key(db.session, client_id))
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    data = {**data, "owner": data["owner"]["email"], "scopes": " ".join(data["scopes"])}
    for name, value in data.items():
        click.echo(f"{name:<14} {'-' if value in (None, '') else value}")


brownouts = click.Group(
    "brownouts", help="Schedule legacy-key brownouts (stored in the database; serving "
    "processes pick a change up within 10 s).")
legacy_cli.add_command(brownouts)


@brownouts.command("add")
@click.option("--start", required=True, callback=_parse_time, help="RFC 3339, e.g. "
              "2030-01-01T14:00:00Z.")
@click.option("--end", required=True, callback=_parse_time, help="RFC 3339; the window is "
              "[start, end).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional
def brownouts_add(start: Any, end: Any, as_json: bool) -> None:
    """Refuse every legacy key from --start until --end, as at the sunset (audited)."""
    try:
        row = legacy_service.add_brownout(db.session, start, end, Actor.cli())
    except InvalidInput as exc:  # name the flag, not the field
        raise click.BadParameter(exc.message, param_hint="--end") from None
    payload = {"id": str(row.id), "source": "database", "starts_at": isoformat(row.starts_at),
               "ends_at": isoformat(row.ends_at)}
    if as_json:
        click.echo(json.dumps(payload, sort_keys=True))
    else:
        click.echo(f"brownout {row.id}: legacy keys refused from {payload['starts_at']} until "
                   f"{payload['ends_at']}")


@brownouts.command("list")
@click.option("--all", "include_past", is_flag=True, help="Also windows that have ended.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@transactional(writes=False)
def brownouts_list(include_past: bool, as_json: bool) -> None:
    """The whole schedule: KEYMINT_LEGACY_BROWNOUTS windows (source config) and stored ones
    (source database, with the id `remove` takes), by start."""
    now = utcnow()
    rows = [{"id": None, "source": "config", "starts_at": isoformat(start),
             "ends_at": isoformat(end), "_start": start}
            for start, end in current_app.config["KEYMINT_LEGACY_BROWNOUTS"]
            if include_past or end > now]
    rows += [{"id": str(b.id), "source": "database", "starts_at": isoformat(b.starts_at),
              "ends_at": isoformat(b.ends_at), "_start": b.starts_at}
             for b in legacy_service.list_brownouts(db.session, include_past=include_past)]
    rows.sort(key=lambda r: r.pop("_start"))
    sunset = isoformat(current_app.config["KEYMINT_LEGACY_SUNSET"])
    if as_json:
        click.echo(json.dumps({"brownouts": rows, "sunset_at": sunset}, sort_keys=True))
        return
    for row in rows:
        click.echo(f"{row['id'] or '-':>6}  {row['source']:<8}  {row['starts_at']} -> "
                   f"{row['ends_at']}")
    click.echo(f"sunset: {sunset}", err=True)


@brownouts.command("remove")
@click.argument("brownout_id", type=click.IntRange(min=1))
@transactional
def brownouts_remove(brownout_id: int) -> None:
    """Delete a stored brownout by id (a running one ends within 10 s; audited).

    A KEYMINT_LEGACY_BROWNOUTS window is removed by editing that setting and restarting.
    """
    row = legacy_service.remove_brownout(db.session, brownout_id, Actor.cli())
    click.echo(f"removed brownout {row.id} ({isoformat(row.starts_at)} -> "
               f"{isoformat(row.ends_at)})")
