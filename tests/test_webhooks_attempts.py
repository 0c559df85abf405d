"""One delivery attempt is over within its time budget, however slowly a receiver (or the
name resolver) answers; the lease of a claim outlasts every attempt the claim can hold."""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.runtime import webhook_worker
from app.services import webhooks
from app.services.audit import Actor
from tests.webhook_support import Trickler, deliveries, make_endpoint, run_worker, workspace_id

BUDGET = 0.5  # seconds: an attempt's whole budget in these tests (5 s in production)
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def _job(url: str) -> webhooks.Job:
    return webhooks.Job(delivery_id=0, url=url, body=b'{"type":"webhook.test"}',
                        headers={"content-type": "application/json"})


def _post(url: str, **kwargs) -> webhooks.Outcome:
    """post() in a thread joined with a generous bound, so a regression fails instead of
    hanging the run (the trickle itself ends after 20 s with a 200)."""
    result: list[webhooks.Outcome] = []
    thread = threading.Thread(target=lambda: result.append(
        webhook_worker.post(_job(url), allow_private=True, timeout=BUDGET, **kwargs)),
        daemon=True)
    thread.start()
    thread.join(60)
    assert result, "the attempt did not end"
    return result[0]


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_receiver_trickling_bytes_cannot_stretch_an_attempt(part):
    # Each byte arrives 0.05 s after the last, far inside any per-read timeout: only a
    # deadline for the whole attempt ends it before the receiver finishes (with a 200).
    with Trickler(part) as receiver:
        outcome = _post(receiver.url)
    assert receiver.hits == 1
    assert outcome.status is None and outcome.error == f"timed out after {BUDGET:g} s"
    assert outcome.retryable and not outcome.succeeded


def test_an_answer_within_the_budget_is_read_up_to_the_limit_only():
    with Trickler("body", every=0.0) as receiver:  # 100 kB as fast as it can, byte by byte
        outcome = _post(receiver.url)
    assert outcome.status == 200 and outcome.error is None


def test_a_tls_handshake_that_never_completes_times_out():
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never says a word
        port = server.getsockname()[1]
        outcome = _post(f"https://127.0.0.1:{port}/hook")
    assert outcome.status is None and outcome.error == f"timed out after {BUDGET:g} s"


def test_name_resolution_counts_against_the_budget():
    never = threading.Event()

    def stuck(host, port):  # a resolver that does not answer (until the test ends)
        never.wait(30)
        return ["127.0.0.1"]

    try:
        outcome = _post("http://hooks.example.com/hook", resolver=stuck)
    finally:
        never.set()
    assert outcome.status is None and outcome.error == f"timed out after {BUDGET:g} s"
    assert outcome.retryable


def test_the_worker_records_a_trickled_attempt_as_timed_out_and_retries_it(app, factory,
                                                                          monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", BUDGET)
    slug = factory.workspace(owner=factory.user())
    with Trickler("body") as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with app.app_context():
            endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
            webhooks.send_test(db.session, endpoint, Actor.cli())
            db.session.commit()
        assert run_worker(app).retried == 1
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1,
                                                                              None)
    assert delivery.last_error == f"timed out after {BUDGET:g} s"


def test_the_lease_outlasts_every_attempt_of_a_claimed_batch():
    # A claim holds CLAIM_BATCH deliveries posted one after the other; if the lease ended
    # before the last of them was over, another worker could post it at the same time.
    whole_batch = webhooks.CLAIM_BATCH * webhooks.TIMEOUT_SECONDS
    assert webhooks.LEASE.total_seconds() >= 4 * whole_batch
    assert webhook_worker.BATCH == webhooks.CLAIM_BATCH


def test_a_claim_takes_at_most_a_batch_and_leases_it_for_exactly_the_lease(app, factory):
    slug = factory.workspace(owner=factory.user())
    public_id, _ = make_endpoint(app, slug, "http://127.0.0.1:9/hook")
    with freeze_time(T0), app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        for _ in range(webhooks.CLAIM_BATCH + 1):
            webhooks.send_test(db.session, endpoint, Actor.cli())
        db.session.commit()
        jobs = webhooks.claim(db.session, T0)
        db.session.commit()
    assert len(jobs) == webhooks.CLAIM_BATCH
    claimed = [d for d in deliveries(app) if d.attempts == 1]
    assert len(claimed) == webhooks.CLAIM_BATCH
    assert {d.next_attempt_at for d in claimed} == {T0 + webhooks.LEASE}


def test_an_ssl_context_still_verifies_certificates():
    # The pinned HTTPS connection connects to the checked address but verifies the name.
    conn = webhook_worker._PinnedHTTPSConnection("hooks.example.com", 443, "127.0.0.1",
                                                 deadline=0.0)
    assert conn._context.verify_mode == ssl.CERT_REQUIRED and conn._context.check_hostname
