"""Webhooks pages (admins, owners): endpoints, create (secret shown once), enable/disable,
send a test event, rotate the secret, deliveries."""

from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console import admin, bp, session
from app.extensions import db
from app.models import WebhookEndpoint
from app.services import access, webhooks
from app.services.errors import DomainError, NotFound

# The API's field names in the services' messages, as the form's labels say them.
WORDS = {"url": "the URL", "event_types": "the events", "description": "the description"}
NOTICES = {
    "enabled": "Endpoint enabled.",
    "disabled": "Endpoint disabled: no events are delivered to it until it is enabled again.",
    "test": "Test event queued: the delivery worker sends it shortly (see Deliveries).",
}


def _allow_private() -> bool:
    return bool(current_app.config.get("KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS", False))


def _managing(slug: str) -> admin.Page:
    p = admin.page(slug, managers_only=True)
    access.require_manager(p.principal, "manage webhooks")  # the API's rule, after the gate
    return p


def _endpoint(p: admin.Page, webhook_id: str, *, lock: bool = False) -> WebhookEndpoint:
    try:
        return webhooks.get_endpoint(db.session, p.workspace.id, webhook_id, lock=lock)
    except NotFound:
        abort(404, description="There is no such webhook endpoint in this workspace.")


def _render_list(p: admin.Page, *, errors: dict[str, str] | None = None,
                 values: dict[str, object] | None = None, status: int = 200) -> Response:
    body = render_template(
        "console/webhooks.html", workspace=p.workspace, page=p,
        endpoints=webhooks.list_endpoints(db.session, p.workspace.id),
        event_types=webhooks.EVENT_TYPES, errors=errors or {},
        values=values or {"enabled": True, "event_types": []},
        allow_private=_allow_private())
    return admin.html(body, status)


@bp.get("/w/<slug>/webhooks", endpoint="webhooks")
@session.signed_in
def webhooks_page(slug: str) -> Response:
    return _render_list(_managing(slug))


@bp.post("/w/<slug>/webhooks")
@session.signed_in
def webhook_create(slug: str) -> Response:
    """Create, as POST /api/v1/webhooks; the answer is the only page showing the secret."""
    p = _managing(slug)
    values: dict[str, object] = {
        "url": request.form.get("url", "").strip(),
        "description": request.form.get("description", ""),
        "event_types": request.form.getlist("event_types"),
        "enabled": request.form.get("enabled") == "on",
    }
    try:
        made = webhooks.create_endpoint(
            db.session, p.workspace.id, session.actor(), url=str(values["url"]),
            allow_private=_allow_private(), event_types=values["event_types"],  # type: ignore[arg-type]
            description=str(values["description"]), enabled=bool(values["enabled"]))
    except DomainError as error:
        errors, status = admin.errors_of(error, words=WORDS)
        return _render_list(p, errors=errors, values=values, status=status)
    body = render_template("console/webhook_secret.html", workspace=p.workspace, page=p,
                           endpoint=made.endpoint, secret=made.secret, created=True)
    return admin.html(body, 201)


def _render_detail(p: admin.Page, endpoint: WebhookEndpoint, *,
                   errors: dict[str, str] | None = None, status: int = 200) -> Response:
    cursor = request.args.get("cursor") or None
    errors = dict(errors or {})
    try:
        found = webhooks.page_deliveries(db.session, endpoint, cursor=cursor)
        deliveries, next_cursor = found.deliveries, found.next_cursor
    except DomainError as error:
        deliveries, next_cursor = [], None
        more, status = admin.errors_of(error, field="cursor")
        errors.update(more)
    body = render_template(
        "console/webhook.html", workspace=p.workspace, page=p, endpoint=endpoint,
        deliveries=deliveries, next_cursor=next_cursor, first_page=cursor is None,
        errors=errors, notice=NOTICES.get(request.args.get("done", "")))
    return admin.html(body, status)


@bp.get("/w/<slug>/webhooks/<webhook_id>")
@session.signed_in
def webhook_detail(slug: str, webhook_id: str) -> Response:
    p = _managing(slug)
    return _render_detail(p, _endpoint(p, webhook_id))


@bp.post("/w/<slug>/webhooks/<webhook_id>/enabled")
@session.signed_in
def webhook_enabled(slug: str, webhook_id: str) -> Response:
    """Enable or disable (form field `enabled`: on/off), as PATCH /api/v1/webhooks/{id}."""
    p = _managing(slug)
    endpoint = _endpoint(p, webhook_id, lock=True)
    wanted = request.form.get("enabled", "")
    if wanted not in ("on", "off"):
        return _render_detail(p, endpoint, errors={"enabled": "Choose enable or disable."},
                              status=400)
    try:
        webhooks.update_endpoint(db.session, endpoint, session.actor(),
                                 allow_private=_allow_private(), enabled=wanted == "on")
    except DomainError as error:
        errors, status = admin.errors_of(error, field="enabled")
        return _render_detail(p, endpoint, errors=errors, status=status)
    done = "enabled" if wanted == "on" else "disabled"
    return redirect(url_for("console.webhook_detail", slug=slug, webhook_id=webhook_id,
                            done=done), 303)


@bp.post("/w/<slug>/webhooks/<webhook_id>/test")
@session.signed_in
def webhook_test(slug: str, webhook_id: str) -> Response:
    """Queue a webhook.test event for this endpoint, as POST /api/v1/webhooks/{id}/test."""
    p = _managing(slug)
    endpoint = _endpoint(p, webhook_id)
    try:
        webhooks.send_test(db.session, endpoint, session.actor())
    except DomainError as error:
        errors, status = admin.errors_of(error, field="test")
        return _render_detail(p, endpoint, errors=errors, status=status)
    return redirect(url_for("console.webhook_detail", slug=slug, webhook_id=webhook_id,
                            done="test"), 303)


@bp.post("/w/<slug>/webhooks/<webhook_id>/rotate-secret")
@session.signed_in
def webhook_rotate(slug: str, webhook_id: str) -> Response:
    """A new signing secret, shown once; the previous one keeps signing for a grace period."""
    p = _managing(slug)
    endpoint = _endpoint(p, webhook_id, lock=True)
    made = webhooks.rotate_secret(db.session, endpoint, session.actor())
    body = render_template("console/webhook_secret.html", workspace=p.workspace, page=p,
                           endpoint=made.endpoint, secret=made.secret, created=False,
                           grace_hours=int(webhooks.SECRET_GRACE.total_seconds() // 3600))
    return admin.html(body)
