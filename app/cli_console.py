"""`keymint console login-link EMAIL`: one-time sign-in links to the web console."""

from __future__ import annotations

import json

import click
from flask import current_app

from app.cli import transactional
from app.clock import isoformat
from app.config import ConfigError, normalise_issuer
from app.extensions import db
from app.services import console_auth
from app.services.audit import Actor

console_cli = click.Group("console", help="The web console (served under /console/).")


@console_cli.command("login-link")
@click.argument("email")
@click.option("--base-url", default=None, metavar="URL",
              help="The console's public base URL (default: KEYMINT_ISSUER).")
@click.option("--note", default=None, help="Why the link was made (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@transactional
def login_link(email: str, base_url: str | None, note: str | None, as_json: bool) -> None:
    """Print a sign-in link for EMAIL: valid 15 minutes, usable once, only by that user
    (audited as console.login_link_created). Send it to the person over a trusted channel."""
    try:
        base = normalise_issuer(base_url) if base_url else current_app.config.get(
            "KEYMINT_ISSUER")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).replace("KEYMINT_ISSUER", "--base-url"),
                                 param_hint="--base-url") from None
    if not base:
        raise click.UsageError("no base URL for the link: set KEYMINT_ISSUER or pass "
                               "--base-url https://keymint.example.com")
    created = console_auth.create_login_link(db.session, email, Actor.cli(), note=note)
    url = f"{base}/console/sign-in/link/{created.token}"
    expires = isoformat(created.link.expires_at)
    if as_json:
        click.echo(json.dumps({"url": url, "email": created.link.user.email,
                               "expires_at": expires}, sort_keys=True))
        return
    click.echo(url)
    click.echo(f"For {created.link.user.email}; usable once, until {expires}.", err=True)
