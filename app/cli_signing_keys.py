"""The `keymint signing-keys` commands: list, rotate and retire the JWT signing keys."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from app.clock import isoformat, utcnow
from app.extensions import db
from app.models import SigningKey
from app.services import signing_keys
from app.services.audit import Actor
from app.services.errors import DomainError
from app.transactions import begin_write


def _command(writes: bool) -> Callable[[Callable[..., Any]], Any]:
    """One transaction per command; a domain error is a one-line message and exit code 1."""

    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                if writes:
                    begin_write(db.session)  # the writer from its first read (app.transactions)
                result = func(*args, **kwargs)
                db.session.commit()
                return result
            except DomainError as exc:
                db.session.rollback()
                raise click.ClickException(exc.message) from None
            except BaseException:
                db.session.rollback()
                raise

        return with_appcontext(wrapper)

    return decorate


def _kek() -> bytes | None:
    secret = current_app.config.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY")
    return secret.reveal() if secret is not None else None


def _max_token_ttl() -> int:
    return current_app.config["KEYMINT_JWT_ACCESS_TOKEN_TTL"]


def signing_key_json(key: SigningKey) -> dict[str, Any]:
    """A signing key as the CLI shows it: its timeline, never its private part."""
    now = utcnow()
    return {"kid": key.kid, "alg": key.alg, "state": signing_keys.state(key, now),
            "published": signing_keys.is_published(key, now),
            "created_at": isoformat(key.created_at),
            "activates_at": isoformat(key.activates_at),
            "retires_at": isoformat(key.retires_at),
            "published_until": isoformat(key.published_until)}


def _line(data: dict[str, Any]) -> str:
    return (f"{data['kid']}  {data['alg']:<5} {data['state']:<7} "
            f"published={'yes' if data['published'] else 'no '} "
            f"signs_from={data['activates_at']} until={data['retires_at'] or '-'} "
            f"published_until={data['published_until'] or '-'}")


@click.group("signing-keys")
def signing_keys_cli() -> None:
    """JWT signing keys: published at /.well-known/jwks.json before they sign."""


@signing_keys_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_command(writes=False)
def signing_keys_list(as_json: bool) -> None:
    """List signing keys, oldest first (never a private part)."""
    rows = [signing_key_json(k) for k in signing_keys.list_keys(db.session)]
    if as_json:
        click.echo(json.dumps({"signing_keys": rows}, sort_keys=True))
        return
    for row in rows:
        click.echo(_line(row))


@signing_keys_cli.command("rotate")
@click.option("--alg", type=click.Choice(list(signing_keys.ALGORITHMS)),
              default=signing_keys.DEFAULT_ALG, show_default=True)
@click.option("--now", "at_once", is_flag=True,
              help="Sign with the new key at once (the first key, or an emergency): resource "
                   "servers holding a cached JWKS refetch it on the unknown kid.")
@click.option("--json", "as_json", is_flag=True)
@_command(writes=True)
def signing_keys_rotate(alg: str, at_once: bool, as_json: bool) -> None:
    """Add a signing key, published now; it signs once every cached JWKS lists it."""
    key = signing_keys.rotate(db.session, _kek(), Actor.cli(), alg=alg, at_once=at_once,
                              max_token_ttl=_max_token_ttl())
    data = signing_key_json(key)
    click.echo(json.dumps(data, sort_keys=True) if as_json else _line(data))


# A kid is an RFC 7638 thumbprint (base64url): one in 64 begins with "-", which click would
# take for an option; an unknown "option" is handed to KID instead.
@signing_keys_cli.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@_command(writes=True)
def signing_keys_retire(kid: str) -> None:
    """Stop a key signing now; it stays published until the tokens it signed expire."""
    key = signing_keys.retire(db.session, kid, Actor.cli(), max_token_ttl=_max_token_ttl())
    click.echo(_line(signing_key_json(key)))
