"""`keymint webhooks …`: endpoints from the command line, and the delivery worker."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from prometheus_client import start_http_server

from app.cli import transactional
from app.extensions import db
from app.runtime import webhook_worker
from app.serialize import webhook_delivery_json, webhook_json
from app.services import accounts, webhooks
from app.services.audit import Actor


@click.group("webhooks")
def webhooks_cli() -> None:
    """Webhook endpoints of workspaces, and the worker that delivers their events."""


def _allow_private() -> bool:
    return bool(current_app.config.get("KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS", False))


def _endpoint(slug: str, webhook_id: str, *, lock: bool = False) -> Any:
    workspace = accounts.get_workspace(db.session, slug)
    return webhooks.get_endpoint(db.session, workspace.id, webhook_id, lock=lock)


def _event_types(values: tuple[str, ...]) -> list[str] | None:
    return list(values) if values else None


@webhooks_cli.command("list")
@click.option("--workspace", "slug", required=True)
@transactional(writes=False)
def webhooks_list(slug: str) -> None:
    """The workspace's endpoints as JSON (never their secrets)."""
    workspace = accounts.get_workspace(db.session, slug)
    found = webhooks.list_endpoints(db.session, workspace.id)
    click.echo(json.dumps({"webhooks": [webhook_json(e) for e in found]}, sort_keys=True))


@webhooks_cli.command("create")
@click.option("--workspace", "slug", required=True)
@click.option("--url", required=True)
@click.option("--event", "event_types", multiple=True,
              help="An event type to receive (repeatable); none: every event.")
@click.option("--description", default="")
@transactional
def webhooks_create(slug: str, url: str, event_types: tuple[str, ...],
                    description: str) -> None:
    """A new endpoint; prints its signing secret, which is not shown again."""
    workspace = accounts.get_workspace(db.session, slug)
    made = webhooks.create_endpoint(db.session, workspace.id, Actor.cli(), url=url,
                                    allow_private=_allow_private(),
                                    event_types=_event_types(event_types),
                                    description=description)
    click.echo(f"created {made.endpoint.public_id}\nsecret: {made.secret}\n"
               "(shown only now: give it to the receiver)")


@webhooks_cli.command("update")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@click.option("--url")
@click.option("--event", "event_types", multiple=True)
@click.option("--enable/--disable", "enabled", default=None)
@transactional
def webhooks_update(slug: str, webhook_id: str, url: str | None,
                    event_types: tuple[str, ...], enabled: bool | None) -> None:
    """Change an endpoint; --enable resumes one that was disabled after failures."""
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = url
    if event_types:
        changes["event_types"] = list(event_types)
    if enabled is not None:
        changes["enabled"] = enabled
    endpoint = _endpoint(slug, webhook_id, lock=True)
    webhooks.update_endpoint(db.session, endpoint, Actor.cli(),
                             allow_private=_allow_private(), **changes)
    click.echo(json.dumps(webhook_json(endpoint), sort_keys=True))


@webhooks_cli.command("delete")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@transactional
def webhooks_delete(slug: str, webhook_id: str) -> None:
    """Delete an endpoint and its deliveries."""
    webhooks.delete_endpoint(db.session, _endpoint(slug, webhook_id, lock=True), Actor.cli())
    click.echo(f"deleted {webhook_id}")


@webhooks_cli.command("rotate-secret")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@transactional
def webhooks_rotate_secret(slug: str, webhook_id: str) -> None:
    """A new signing secret; the previous one also signs for 24 hours."""
    made = webhooks.rotate_secret(db.session, _endpoint(slug, webhook_id, lock=True),
                                  Actor.cli())
    click.echo(f"secret: {made.secret}\n(shown only now; the previous secret also signs "
               f"until {webhook_json(made.endpoint)['previous_secret_expires_at']})")


@webhooks_cli.command("test")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@transactional
def webhooks_test(slug: str, webhook_id: str) -> None:
    """Queue a webhook.test event for the endpoint (the worker posts it)."""
    delivery = webhooks.send_test(db.session, _endpoint(slug, webhook_id), Actor.cli())
    click.echo(f"queued {delivery.public_id}")


@webhooks_cli.command("deliveries")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@click.option("--limit", type=click.IntRange(1, webhooks.MAX_PAGE_SIZE), default=50)
@transactional(writes=False)
def webhooks_deliveries(slug: str, webhook_id: str, limit: int) -> None:
    """The endpoint's latest deliveries as JSON, newest first."""
    page = webhooks.page_deliveries(db.session, _endpoint(slug, webhook_id), limit=limit)
    click.echo(json.dumps({"deliveries": [webhook_delivery_json(d) for d in page.deliveries]},
                          sort_keys=True))


@webhooks_cli.command("retry")
@click.option("--workspace", "slug", required=True)
@click.argument("webhook_id")
@click.argument("delivery_id")
@transactional
def webhooks_retry(slug: str, webhook_id: str, delivery_id: str) -> None:
    """Make a delivery due now again (same webhook-id)."""
    endpoint = _endpoint(slug, webhook_id)
    delivery = webhooks.get_delivery(db.session, endpoint, delivery_id, lock=True)
    webhooks.retry_delivery(db.session, endpoint, delivery, Actor.cli())
    click.echo(f"queued {delivery.public_id}")


@webhooks_cli.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (for cron).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics of the deliveries on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@with_appcontext
def webhooks_run(once: bool, metrics_port: int | None, metrics_host: str) -> None:
    """The delivery worker: posts due deliveries and finds expiry notices on a schedule.

    Several workers may run at once (on PostgreSQL they never claim the same delivery).
    SIGTERM or SIGINT: the batch in hand is finished, then the worker exits.
    """
    allow_private = _allow_private()
    sunset = current_app.config.get("KEYMINT_LEGACY_SUNSET")
    if once:
        stats = webhook_worker.run_once(db.session, allow_private=allow_private,
                                        legacy_sunset=sunset)
        click.echo(f"queued {stats.queued} scheduled event(s); delivered {stats.delivered}, "
                   f"retrying {stats.retried}, failed {stats.failed}")
        return
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host,
                          registry=webhook_worker.metrics_registry(current_app._get_current_object()))
    stop = threading.Event()

    def finish(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    click.echo("webhook worker started", err=True)
    webhook_worker.run_forever(db.session, stop, allow_private=allow_private,
                               legacy_sunset=sunset)
    click.echo("webhook worker stopped", err=True)
