"""Webhooks: endpoints and their secrets, the outbox, delivery bookkeeping and the schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.clock import epoch, isoformat, utcnow
from app.credentials import WEBHOOK_SECRET_PREFIX
from app.models import (
    ApiKey,
    DeliveryStatus,
    KeySecret,
    LegacyKey,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookMark,
)
from app.services import audit, pagination
from app.services.audit import Actor
from app.services.errors import InvalidInput, NotFound
from app.transactions import begin_write, locked

EVENT_TYPES = (
    "key.created", "key.expiring", "key.expired", "key.revoked", "key.secret_rotated",
    "key.previous_secret_expiring", "token.reuse_detected", "member.added", "member.removed",
    "legacy.sunset_approaching", "webhook.test",
)
SECRET_PREFIX = WEBHOOK_SECRET_PREFIX  # the log redactor knows it too (app/credentials.py)
ENDPOINT_ID_PREFIX = "whe_"
EVENT_ID_PREFIX = "msg_"
DELIVERY_ID_PREFIX = "whd_"
_ID_BODY = 24
ENDPOINT_ID_PATTERN = f"^{ENDPOINT_ID_PREFIX}[0-9A-Za-z]{{{_ID_BODY}}}$"
DELIVERY_ID_PATTERN = f"^{DELIVERY_ID_PREFIX}[0-9A-Za-z]{{{_ID_BODY}}}$"
MAX_URL_LEN = 2048
MAX_DESCRIPTION_LEN = 200
MAX_ENDPOINTS_PER_WORKSPACE = 20
DEFAULT_EXPIRING_DAYS = (30, 7, 1)
MAX_EXPIRING_DAY = 365
# The previous secret keeps signing this long after a rotation (receivers roll over).
SECRET_GRACE = timedelta(hours=24)

# Delivery policy (Standard Webhooks' "at least once").
# One attempt, all told (name resolution, connecting, sending, the answer's status, headers
# and the start of its body): app/runtime/webhook_worker.py enforces it as a deadline.
TIMEOUT_SECONDS = 5.0
RETRY_WINDOW = timedelta(hours=24)     # after this, a failing delivery is given up
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 6 * 3600
JITTER = 0.25                          # a retry is due within [delay, delay * 1.25]
# A claimed delivery is due again this long after its claim if its worker dies. A worker
# claims CLAIM_BATCH at once and posts them one after the other, so the lease must outlast
# CLAIM_BATCH whole attempts (50 s) with room to spare for recording their outcomes:
# otherwise a second worker could post a delivery the first one is still posting.
CLAIM_BATCH = 10
LEASE = timedelta(minutes=5)
DISABLE_AFTER_FAILURES = 10            # consecutive failed attempts before disabling
PREVIOUS_SECRET_NOTICE = timedelta(hours=1)
LEGACY_SUNSET_DAYS = (30, 7, 1)
LEGACY_RECENT_USE = timedelta(days=30)  # a legacy key used within this is still "in use"
ERROR_SNIPPET_LEN = 200
RETRYABLE_STATUSES = frozenset({408, 429})
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def _random_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(_ID_BODY))


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes: the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# --- targets -------------------------------------------------------------------------------

Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_target(url: str, *, allow_private: bool) -> Target:
    """The URL's scheme, host and port, if keymint may ever post to it (before DNS)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LEN:
        raise InvalidInput(f"url must be 1-{MAX_URL_LEN} characters", field="url")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url) \
            or not url.isascii():
        raise InvalidInput("url must be ASCII without spaces or control characters "
                           "(punycode for international names)", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL", field="url") from None
    if port == 0:
        raise InvalidInput("url has port 0", field="url")
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise InvalidInput("url must use https", field="url")
    if not parts.hostname:
        raise InvalidInput("url needs a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not carry credentials", field="url")
    if parts.fragment:
        raise InvalidInput("url must not have a #fragment", field="url")
    host = parts.hostname
    if not allow_private:
        literal = _literal_ip(host)
        if literal is not None and not is_public_address(literal):
            raise InvalidInput("url points at a private, loopback or link-local address",
                               field="url")
        if literal is None and (host == "localhost" or host.endswith((".localhost",
                                                                      ".internal", ".local"))):
            raise InvalidInput("url points at a local name", field="url")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """parse_target, then every address the host resolves to must be public (unless
    allowed). A name that does not resolve (yet) is accepted: delivery checks again."""
    target = parse_target(url, allow_private=allow_private)
    if not allow_private:
        addresses = (resolver or resolve)(target.host, target.port)
        if any(not is_public_address(a) for a in addresses):
            raise InvalidInput("url resolves to a private, loopback or link-local address",
                               field="url")
    return target


class Unresolved(InvalidInput):
    """The target's name did not resolve now: often a passing DNS failure, so a delivery
    retries it (a creation accepts it: delivery checks again)."""


def delivery_addresses(url: str, *, allow_private: bool,
                       resolver: Resolver | None = None) -> tuple[Target, list[str]]:
    """Where a delivery may connect, resolved now (a name may have been re-pointed since
    the endpoint was created: DNS rebinding). Raises InvalidInput when it may not."""
    target = parse_target(url, allow_private=allow_private)
    addresses = list((resolver or resolve)(target.host, target.port))
    if not addresses:
        raise Unresolved(f"{target.host} does not resolve", field="url")
    if not allow_private and any(not is_public_address(a) for a in addresses):
        raise InvalidInput("url resolves to a private, loopback or link-local address",
                           field="url")
    return target, addresses


# --- endpoints -----------------------------------------------------------------------------


def parse_event_types(types: Sequence[str] | None) -> list[str]:
    """Known event types, de-duplicated in given order; empty means every event."""
    if types is None:
        return []
    if isinstance(types, str) or not all(isinstance(t, str) for t in types):
        raise InvalidInput("event_types must be a list of event types", field="event_types")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(f"unknown event type {unknown[0]!r}; known: "
                           + ", ".join(EVENT_TYPES), field="event_types")
    return list(dict.fromkeys(types))


def parse_expiring_days(days: Sequence[int] | None) -> list[int]:
    if days is None:
        return list(DEFAULT_EXPIRING_DAYS)
    if (isinstance(days, str) or not 1 <= len(days) <= 10 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_EXPIRING_DAY
            for d in days)):
        raise InvalidInput(f"expiring_days must be 1 to 10 whole days between 1 and "
                           f"{MAX_EXPIRING_DAY}", field="expiring_days")
    return sorted(set(days), reverse=True)


def _clean_description(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > MAX_DESCRIPTION_LEN or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION_LEN} characters "
                           "without control characters", field="description")
    return text


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str


def url_for_audit(url: str) -> str:
    """The URL without its query string: receivers often put a token there, and the audit
    trail keeps no credentials."""
    base, sep, _ = url.partition("?")
    return base + ("?…" if sep else "")


def _audit(session: Session, action: str, actor: Actor, endpoint: WebhookEndpoint,
           details: dict[str, Any] | None = None) -> None:
    audit.record(session, action, actor, workspace_id=endpoint.workspace_id,
                 target_type="webhook", target_id=endpoint.public_id, details=details)


def create_endpoint(session: Session, workspace_id: int, actor: Actor, *, url: str,
                    allow_private: bool, event_types: Sequence[str] | None = None,
                    description: str | None = None,
                    expiring_days: Sequence[int] | None = None,
                    enabled: bool = True, resolver: Resolver | None = None
                    ) -> EndpointWithSecret:
    """A new endpoint; its secret is in the result and never shown again."""
    check_url(url, allow_private=allow_private, resolver=resolver)
    types = parse_event_types(event_types)
    days = parse_expiring_days(expiring_days)
    description = _clean_description(description)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                           .where(WebhookEndpoint.workspace_id == workspace_id)) or 0
    if count >= MAX_ENDPOINTS_PER_WORKSPACE:
        raise InvalidInput(f"a workspace has at most {MAX_ENDPOINTS_PER_WORKSPACE} webhook "
                           "endpoints", field="url")
    now = utcnow()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        public_id=_random_id(ENDPOINT_ID_PREFIX), workspace_id=workspace_id, url=url,
        description=description, event_types=" ".join(types),
        expiring_days=" ".join(str(d) for d in days), enabled=bool(enabled),
        consecutive_failures=0, secret=secret, created_at=now, updated_at=now)
    session.add(endpoint)
    session.flush()
    _audit(session, "webhook.created", actor, endpoint,
           {"url": url_for_audit(url), "event_types": types, "enabled": endpoint.enabled})
    return EndpointWithSecret(endpoint, secret)


def get_endpoint(session: Session, workspace_id: int, public_id: str, *,
                 lock: bool = False) -> WebhookEndpoint:
    """The workspace's endpoint `public_id`; NotFound for anything else."""
    if (not public_id.isascii() or len(public_id) != len(ENDPOINT_ID_PREFIX) + _ID_BODY
            or not public_id.startswith(ENDPOINT_ID_PREFIX)):
        raise NotFound(f"no webhook {public_id!r}", field="webhook_id")
    query = select(WebhookEndpoint).where(WebhookEndpoint.public_id == public_id,
                                          WebhookEndpoint.workspace_id == workspace_id)
    if lock:
        query = locked(session, query)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no webhook {public_id!r}", field="webhook_id")
    return found


def list_endpoints(session: Session, workspace_id: int) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint)
                                .where(WebhookEndpoint.workspace_id == workspace_id)
                                .order_by(WebhookEndpoint.id)))


_UNSET: Any = object()


def update_endpoint(session: Session, endpoint: WebhookEndpoint, actor: Actor, *,
                    allow_private: bool, url: str = _UNSET, event_types: Any = _UNSET,
                    description: Any = _UNSET, expiring_days: Any = _UNSET,
                    enabled: Any = _UNSET, resolver: Resolver | None = None
                    ) -> WebhookEndpoint:
    """Change what is given; enabling a disabled endpoint clears its failure run."""
    changes: dict[str, Any] = {}
    if url is not _UNSET and url != endpoint.url:
        check_url(url, allow_private=allow_private, resolver=resolver)
        changes["url"] = {"from": url_for_audit(endpoint.url), "to": url_for_audit(url)}
        endpoint.url = url
    if event_types is not _UNSET:
        types = " ".join(parse_event_types(event_types))
        if types != endpoint.event_types:
            changes["event_types"] = {"from": endpoint.event_type_list, "to": types.split()}
            endpoint.event_types = types
    if description is not _UNSET:
        text = _clean_description(description)
        if text != endpoint.description:
            changes["description"] = {"from": endpoint.description, "to": text}
            endpoint.description = text
    if expiring_days is not _UNSET:
        days = " ".join(str(d) for d in parse_expiring_days(expiring_days))
        if days != endpoint.expiring_days:
            changes["expiring_days"] = {"from": endpoint.expiring_day_list,
                                        "to": [int(d) for d in days.split()]}
            endpoint.expiring_days = days
    if enabled is not _UNSET and bool(enabled) != endpoint.enabled:
        changes["enabled"] = {"from": endpoint.enabled, "to": bool(enabled)}
        endpoint.enabled = bool(enabled)
        if endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.disabled_at = None
            endpoint.consecutive_failures = 0
        else:
            endpoint.disabled_reason = "disabled_by_user"
            endpoint.disabled_at = utcnow()
    if changes:
        endpoint.updated_at = utcnow()
        _audit(session, "webhook.updated", actor, endpoint, changes)
    session.flush()
    return endpoint


def delete_endpoint(session: Session, endpoint: WebhookEndpoint, actor: Actor) -> None:
    """The endpoint, its deliveries and its sent notices; the events stay (other endpoints
    may still be delivering them)."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.execute(delete(WebhookMark).where(WebhookMark.endpoint_id == endpoint.id))
    _audit(session, "webhook.deleted", actor, endpoint, {"url": url_for_audit(endpoint.url)})
    session.delete(endpoint)
    session.flush()


def rotate_secret(session: Session, endpoint: WebhookEndpoint, actor: Actor
                  ) -> EndpointWithSecret:
    """A new secret; the previous one also signs for SECRET_GRACE, older ones end now."""
    now = utcnow()
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + SECRET_GRACE
    endpoint.secret = secret
    endpoint.updated_at = now
    _audit(session, "webhook.secret_rotated", actor, endpoint,
           {"previous_expires_at": isoformat(endpoint.previous_secret_expires_at)})
    session.flush()
    return EndpointWithSecret(endpoint, secret)


# --- the outbox ----------------------------------------------------------------------------


def _write_event(session: Session, event_type: str, workspace_id: int, data: dict[str, Any],
                 endpoints: Sequence[WebhookEndpoint], now: datetime) -> WebhookEvent:
    event = WebhookEvent(public_id=_random_id(EVENT_ID_PREFIX), workspace_id=workspace_id,
                         type=event_type, occurred_at=now, data=data)
    session.add(event)
    session.flush()
    for endpoint in endpoints:
        session.add(WebhookDelivery(public_id=_random_id(DELIVERY_ID_PREFIX), event_id=event.id,
                                    endpoint_id=endpoint.id, status=DeliveryStatus.PENDING.value,
                                    attempts=0, next_attempt_at=now, created_at=now,
                                    retry_until=now + RETRY_WINDOW))
    session.flush()
    return event


# Field names that would mean a credential slipped into a payload.
_SECRET_FIELDS = frozenset({"secret", "client_secret", "token", "access_token", "digest",
                            "authorization", "password"})


def _check_public(data: Any) -> None:
    if isinstance(data, dict):
        for name, value in data.items():
            if str(name).lower() in _SECRET_FIELDS:
                raise ValueError(f"webhook payloads must not carry {name!r}")
            _check_public(value)
    elif isinstance(data, list):
        for value in data:
            _check_public(value)


def emit(session: Session, event_type: str, workspace_id: int,
         data: dict[str, Any]) -> WebhookEvent | None:
    """Queue `event_type` for every enabled endpoint of the workspace that wants it, in the
    caller's transaction: the event commits or rolls back with the change it reports.

    `data` is public facts only (ids, names, times); never a secret, token or digest.
    Nothing is written when no endpoint wants the event.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    _check_public(data)
    wanting = [e for e in session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.enabled.is_(True)))
        if e.wants(event_type)]
    if not wanting:
        return None
    return _write_event(session, event_type, workspace_id, data, wanting, utcnow())


def send_test(session: Session, endpoint: WebhookEndpoint, actor: Actor) -> WebhookDelivery:
    """A webhook.test event for this endpoint alone, whatever it subscribes to."""
    now = utcnow()
    event = _write_event(session, "webhook.test", endpoint.workspace_id,
                         {"webhook_id": endpoint.public_id}, [endpoint], now)
    delivery = session.scalars(select(WebhookDelivery)
                               .where(WebhookDelivery.event_id == event.id)).one()
    _audit(session, "webhook.tested", actor, endpoint, {"delivery": delivery.public_id})
    return delivery


def envelope(event: WebhookEvent) -> dict[str, Any]:
    return {"type": event.type, "id": event.public_id, "occurred_at": isoformat(event.occurred_at),
            "workspace_id": str(event.workspace_id), "data": event.data}


def body_of(event: WebhookEvent) -> bytes:
    """The exact bytes posted, the same on every attempt."""
    return json.dumps(envelope(event), separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode("utf-8")


# --- deliveries (API side) -----------------------------------------------------------------


def get_delivery(session: Session, endpoint: WebhookEndpoint, public_id: str, *,
                 lock: bool = False) -> WebhookDelivery:
    if (not public_id.isascii() or len(public_id) != len(DELIVERY_ID_PREFIX) + _ID_BODY
            or not public_id.startswith(DELIVERY_ID_PREFIX)):
        raise NotFound(f"no delivery {public_id!r}", field="delivery_id")
    query = select(WebhookDelivery).where(WebhookDelivery.public_id == public_id,
                                          WebhookDelivery.endpoint_id == endpoint.id)
    if lock:
        query = locked(session, query)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no delivery {public_id!r}", field="delivery_id")
    return found


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[WebhookDelivery]
    next_cursor: str | None


def page_deliveries(session: Session, endpoint: WebhookEndpoint, *, cursor: str | None = None,
                    limit: int = DEFAULT_PAGE_SIZE) -> DeliveryPage:
    """The endpoint's deliveries, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if cursor is not None:
        before = pagination.decode_cursor("whd", cursor, rejection="cursor is not a "
                                          "next_cursor of this listing")
        query = query.where(WebhookDelivery.id < before)
    rows = session.scalars(query.options(selectinload(WebhookDelivery.event))
                           .order_by(WebhookDelivery.id.desc()).limit(limit + 1)).all()
    page, last = pagination.cut(rows, limit)
    return DeliveryPage(page, None if last is None else pagination.encode_cursor("whd", last))


def retry_delivery(session: Session, endpoint: WebhookEndpoint, delivery: WebhookDelivery,
                   actor: Actor) -> WebhookDelivery:
    """Due now again, with a fresh retry window; a delivered one is sent once more too
    (receivers deduplicate by webhook-id)."""
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING.value
    delivery.next_attempt_at = now
    delivery.completed_at = None
    delivery.retry_until = now + RETRY_WINDOW
    _audit(session, "webhook.delivery_retried", actor, endpoint,
           {"delivery": delivery.public_id})
    session.flush()
    return delivery


# --- signing -------------------------------------------------------------------------------


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1: base64 HMAC-SHA256 over `id.timestamp.body`, keyed with the
    base64-decoded part of the `whsec_` secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(endpoint: WebhookEndpoint, event: WebhookEvent, body: bytes,
                   now: datetime) -> dict[str, str]:
    timestamp = epoch(now)
    signatures = " ".join(sign(s, event.public_id, timestamp, body)
                          for s in endpoint.signing_secrets(now))
    return {"webhook-id": event.public_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures, "content-type": "application/json",
            "user-agent": "keymint-webhooks/1"}


# --- deliveries (worker side) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery: everything needed to post it, outside any transaction."""

    delivery_id: int
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: a status code, or an error (network, timeout, refused target)."""

    status: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after: str | None = None
    refused: bool = False  # the target is not allowed (now): no retry helps

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.refused:
            return False
        if self.status is None:
            return True
        return self.status in RETRYABLE_STATUSES or self.status >= 500


def claim(session: Session, now: datetime, limit: int = CLAIM_BATCH) -> list[Job]:
    """Claim up to `limit` due deliveries of enabled endpoints for this worker: each gets
    a lease (due again at now + LEASE if this worker dies) and one more attempt counted.
    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers never claim the same row;
    SQLite: the database's one write lock. The caller commits before posting."""
    begin_write(session)
    rows = session.scalars(
        select(WebhookDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING.value,
               WebhookDelivery.next_attempt_at <= now, WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
        .execution_options(populate_existing=True)).all()
    jobs = []
    for delivery in rows:
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + LEASE
        body = body_of(delivery.event)
        jobs.append(Job(delivery.id, delivery.endpoint.url, body,
                        signed_headers(delivery.endpoint, delivery.event, body, now)))
    session.flush()
    return jobs


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: 30 s, 1 min, 2 min, … capped at 6 h, each up to
    25 % later so that a receiver's recovery is not met by every retry at once."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
    return timedelta(seconds=base * (1 + (rng or random).uniform(0, JITTER)))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value), int(RETRY_WINDOW.total_seconds())))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


def record_outcome(session: Session, delivery_id: int, outcome: Outcome, now: datetime,
                   rng: random.Random | None = None) -> WebhookDelivery | None:
    """Write what an attempt got: succeeded; failed (4xx, or the retry window is over);
    or pending again after the backoff (or the receiver's Retry-After). A run of failed
    attempts disables the endpoint (audited)."""
    # The endpoint's row first, then the delivery's: the order delete_endpoint locks them in,
    # so a deletion during a delivery waits instead of deadlocking.
    endpoint = session.scalar(locked(session, select(WebhookEndpoint).where(
        WebhookEndpoint.id == select(WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id).scalar_subquery())))
    delivery = session.scalar(locked(session, select(WebhookDelivery)
                                     .where(WebhookDelivery.id == delivery_id)))
    if endpoint is None or delivery is None:  # the endpoint was deleted meanwhile
        return None
    delivery.response_status = outcome.status
    delivery.duration_ms = outcome.duration_ms
    delivery.last_error = outcome.error[:300] if outcome.error else None
    if outcome.succeeded:
        delivery.status = DeliveryStatus.SUCCEEDED.value
        delivery.next_attempt_at = None
        delivery.completed_at = now
        endpoint.consecutive_failures = 0
        session.flush()
        return delivery
    endpoint.consecutive_failures += 1
    delay = retry_delay(delivery.attempts, rng)
    waited = parse_retry_after(outcome.retry_after, now)
    if waited is not None and outcome.status in (429, 503):
        delay = max(delay, waited)
    if outcome.retryable and now + delay < delivery.retry_until:
        delivery.next_attempt_at = now + delay
    else:
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
        delivery.completed_at = now
    if endpoint.enabled and endpoint.consecutive_failures >= DISABLE_AFTER_FAILURES:
        endpoint.enabled = False
        endpoint.disabled_reason = "consecutive_failures"
        endpoint.disabled_at = now
        _audit(session, "webhook.disabled", Actor(type="system", id="webhooks"), endpoint,
               {"consecutive_failures": endpoint.consecutive_failures})
    session.flush()
    return delivery


@dataclass(frozen=True, slots=True)
class Backlog:
    """The outbox as stored now, for metrics (the same whichever process reads it)."""

    queued: int                   # pending: new, waiting for a retry, or being posted
    due: int                      # pending and due now: waiting for a worker
    failed: int                   # given up (kept until deleted)
    oldest_due_at: datetime | None  # when the longest-waiting due delivery became due


def backlog(session: Session, now: datetime) -> Backlog:
    """Two reads of the (status, next_attempt_at) index; delivered rows, which only ever
    grow in number, are not counted."""
    pending = DeliveryStatus.PENDING.value
    failed = DeliveryStatus.FAILED.value
    counts = {str(status): int(count) for status, count in session.execute(
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_((pending, failed)))
        .group_by(WebhookDelivery.status)).all()}
    due, oldest = session.execute(
        select(func.count(), func.min(WebhookDelivery.next_attempt_at))
        .where(WebhookDelivery.status == pending,
               WebhookDelivery.next_attempt_at <= now)).one()
    return Backlog(queued=counts.get(pending, 0), due=int(due or 0),
                   failed=counts.get(failed, 0), oldest_due_at=oldest)


# --- the schedule: notices found by time, not by a change ----------------------------------


def _mark_once(session: Session, endpoint: WebhookEndpoint, subject: str, mark: str,
               now: datetime) -> bool:
    """Record that `mark` was sent for `subject`; False if it was already (by anyone)."""
    exists = session.scalar(select(WebhookMark.id).where(
        WebhookMark.endpoint_id == endpoint.id, WebhookMark.subject == subject,
        WebhookMark.mark == mark))
    if exists is not None:
        return False
    try:
        with session.begin_nested():
            session.add(WebhookMark(endpoint_id=endpoint.id, subject=subject, mark=mark,
                                    created_at=now))
    except IntegrityError:
        return False
    return True


def _key_facts(key: ApiKey) -> dict[str, Any]:
    return {"client_id": key.client_id, "name": key.name, "user_id": str(key.user_id),
            "expires_at": isoformat(key.expires_at)}


def scan_schedule(session: Session, now: datetime,
                  legacy_sunset: datetime | None = None) -> int:
    """Queue the time-driven notices that are due; each fires once per endpoint and subject.

    key.expiring: when a key's expiry comes within one of the endpoint's thresholds (days);
    thresholds crossed together give one notice, the nearest. key.expired: once a key's
    expiry has passed (keys that expired before the endpoint existed are not reported).
    key.previous_secret_expiring: a rotated-out secret's grace ends within the hour.
    legacy.sunset_approaching: 30, 7 and 1 days before `legacy_sunset`, for workspaces with
    enabled legacy keys used within the last 30 days. Returns the number of events queued.
    """
    begin_write(session)
    queued = 0
    endpoints = session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)).all()
    for endpoint in endpoints:
        live = select(ApiKey).where(ApiKey.workspace_id == endpoint.workspace_id,
                                    ApiKey.revoked_at.is_(None))
        if endpoint.wants("key.expiring"):
            days = endpoint.expiring_day_list
            horizon = now + timedelta(days=max(days))
            for key in session.scalars(live.where(ApiKey.expires_at > now,
                                                  ApiKey.expires_at <= horizon)):
                assert key.expires_at is not None
                crossed = [d for d in days if key.expires_at - now <= timedelta(days=d)]
                fresh = [d for d in crossed
                         if _mark_once(session, endpoint, key.client_id, f"expiring:{d}", now)]
                if fresh:
                    _write_event(session, "key.expiring", endpoint.workspace_id,
                                 {**_key_facts(key), "days": min(fresh)}, [endpoint], now)
                    queued += 1
        if endpoint.wants("key.expired"):
            for key in session.scalars(live.where(ApiKey.expires_at <= now,
                                                  ApiKey.expires_at > endpoint.created_at)):
                if _mark_once(session, endpoint, key.client_id, "expired", now):
                    _write_event(session, "key.expired", endpoint.workspace_id,
                                 _key_facts(key), [endpoint], now)
                    queued += 1
        if endpoint.wants("key.previous_secret_expiring"):
            rows = session.execute(
                select(KeySecret, ApiKey).join(ApiKey, ApiKey.id == KeySecret.key_id)
                .where(ApiKey.workspace_id == endpoint.workspace_id,
                       ApiKey.revoked_at.is_(None), KeySecret.revoked_at.is_(None),
                       KeySecret.expires_at > now,
                       KeySecret.expires_at <= now + PREVIOUS_SECRET_NOTICE)).all()
            for secret, key in rows:
                if _mark_once(session, endpoint, f"secret:{secret.id}", "grace_ending", now):
                    _write_event(session, "key.previous_secret_expiring",
                                 endpoint.workspace_id,
                                 {"client_id": key.client_id, "name": key.name,
                                  "previous_secret_expires_at": isoformat(secret.expires_at)},
                                 [endpoint], now)
                    queued += 1
        if legacy_sunset is not None and endpoint.wants("legacy.sunset_approaching"):
            queued += _legacy_notice(session, endpoint, now, legacy_sunset)
    session.flush()
    return queued


def _legacy_notice(session: Session, endpoint: WebhookEndpoint, now: datetime,
                   sunset: datetime) -> int:
    if now >= sunset:
        return 0
    crossed = [d for d in LEGACY_SUNSET_DAYS if sunset - now <= timedelta(days=d)]
    if not crossed:
        return 0
    in_use = session.scalar(select(func.count()).select_from(LegacyKey).where(
        LegacyKey.workspace_id == endpoint.workspace_id, LegacyKey.disabled_at.is_(None),
        LegacyKey.last_used_at >= now - LEGACY_RECENT_USE)) or 0
    if not in_use:
        return 0
    subject = f"legacy-sunset:{epoch(sunset)}"
    fresh = [d for d in crossed if _mark_once(session, endpoint, subject, f"days:{d}", now)]
    if not fresh:
        return 0
    _write_event(session, "legacy.sunset_approaching", endpoint.workspace_id,
                 {"sunset_at": isoformat(sunset), "days": min(fresh),
                  "legacy_keys_in_use": in_use}, [endpoint], now)
    return 1

