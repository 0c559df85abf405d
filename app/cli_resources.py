"""The `keymint resources` commands: register, inspect, change and retire resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from flask import current_app

from app.cli import _emit, transactional
from app.extensions import db
from app.serialize import key_json, resource_json
from app.services import keys as key_service
from app.services import resources as resource_service
from app.services.audit import Actor
from app.services.errors import InvalidInput

resources_cli = click.Group("resources", help="Register the APIs tokens are for (RFC 8707).")


def _routes(path: str | None) -> Any:
    """A route file's decoded JSON; None without --routes. Syntax errors name the line."""
    if path is None:
        return None
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read route file {path}: {exc}", field="routes") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"route file {path}: not JSON (line {exc.lineno}, column "
                           f"{exc.colno}: {exc.msg})", field="routes") from None


def _describe(data: dict[str, Any]) -> str:
    lines = [f"{data['uri']}  {data['name']!r}", f"  scopes:  {' '.join(data['scopes'])}"]
    routes = data["routes"]
    if routes is None:
        lines.append("  routes:  (no policy: the audience alone decides)")
    else:
        lines.append(f"  default: {routes['default']}")
        lines.extend(f"  {r['method']:<7} {r['path']}  -> {' | '.join(r['scopes'])}"
                     for r in routes["routes"])
    return "\n".join(lines)


@resources_cli.command("create")
@click.argument("uri")
@click.option("--name", required=True)
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A scope the resource understands; repeat, or give several space-separated.")
@click.option("--routes", "routes_file", type=click.Path(dir_okay=False),
              help='Route file (JSON): {"default": "deny", "routes": [...]}.')
@click.option("--json", "as_json", is_flag=True)
@transactional
def resources_create(uri: str, name: str, scopes: tuple[str, ...], routes_file: str | None,
                     as_json: bool) -> None:
    """Register a resource (an absolute URI, the tokens' audience)."""
    row = resource_service.create_resource(
        db.session, Actor.cli(), uri=uri, name=name, scopes=" ".join(scopes),
        routes=_routes(routes_file), issuer=current_app.config.get("KEYMINT_ISSUER") or None)
    data = resource_json(row)
    _emit(as_json, data, "registered " + _describe(data))


@resources_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@transactional(writes=False)
def resources_list(as_json: bool) -> None:
    """List registered resources (keymint's own <issuer>/api/v1 is built in)."""
    rows = [resource_json(r) for r in resource_service.list_resources(db.session)]
    if as_json:
        click.echo(json.dumps({"resources": rows}, sort_keys=True))
        return
    for data in rows:
        count = "no policy" if data["routes"] is None else f"{len(data['routes']['routes'])} routes"
        click.echo(f"{data['uri']}  {data['name']!r}  scopes={' '.join(data['scopes'])}  "
                   f"{count}")


@resources_cli.command("show")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True)
@transactional(writes=False)
def resources_show(uri: str, as_json: bool) -> None:
    """Show one resource with its route policy."""
    data = resource_json(resource_service.get_resource(db.session, uri))
    _emit(as_json, data, _describe(data))


@resources_cli.command("update")
@click.argument("uri")
@click.option("--name")
@click.option("--scope", "scopes", multiple=True,
              help="Replace the scopes (repeat); the route policy must still fit them.")
@click.option("--routes", "routes_file", type=click.Path(dir_okay=False),
              help="Replace the route policy with this file.")
@click.option("--clear-routes", is_flag=True, help="Remove the route policy.")
@click.option("--json", "as_json", is_flag=True)
@transactional
def resources_update(uri: str, name: str | None, scopes: tuple[str, ...],
                     routes_file: str | None, clear_routes: bool, as_json: bool) -> None:
    """Rename a resource, replace its scopes or its route policy."""
    if routes_file and clear_routes:
        raise click.UsageError("give --routes or --clear-routes, not both")
    row = resource_service.get_resource(db.session, uri)
    resource_service.update_resource(
        db.session, row, Actor.cli(), name=name,
        scopes=" ".join(scopes) if scopes else None, routes=_routes(routes_file),
        clear_routes=clear_routes)
    data = resource_json(row)
    _emit(as_json, data, "updated " + _describe(data))


@resources_cli.command("delete")
@click.argument("uri")
@transactional
def resources_delete(uri: str) -> None:
    """Unregister a resource; refused while a live key is restricted to it or serves it."""
    row = resource_service.get_resource(db.session, uri)
    resource_service.delete_resource(db.session, row, Actor.cli())
    click.echo(f"deleted {uri}; tokens already issued for it keep it in their audience "
               "until they expire")


@resources_cli.command("restrict-key")
@click.argument("client_id")
@click.option("--resource", "uris", multiple=True,
              help="Restrict the key to this resource (repeat); only ever narrows.")
@click.option("--introspects-for", "introspects_for",
              help="Make the key this resource's server (introspection answers inactive for "
                   "tokens not for it).")
@click.option("--json", "as_json", is_flag=True)
@transactional
def resources_restrict_key(client_id: str, uris: tuple[str, ...], introspects_for: str | None,
                           as_json: bool) -> None:
    """Restrict an existing key to resources, or bind an introspecting key to one."""
    if not uris and introspects_for is None:
        raise click.UsageError("give --resource and/or --introspects-for")
    key = key_service.get_key(db.session, client_id, lock=True)
    key_service.update_key(db.session, key, key.workspace, Actor.cli(),
                           resources=list(uris) if uris else None,
                           introspects_for=introspects_for,
                           issuer=current_app.config.get("KEYMINT_ISSUER") or None)
    data = key_json(key)
    _emit(as_json, data, f"{client_id}: resources={' '.join(data['resources'] or ['(any)'])} "
                         f"introspects_for={data['introspects_for'] or '-'}")
