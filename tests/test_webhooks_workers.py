"""Real `keymint webhooks run` processes: killed with SIGKILL mid-delivery, restarted, two at
once on PostgreSQL, stopped with SIGTERM. Every process a test starts is stopped by it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.clock import utcnow
from app.extensions import db
from app.models import WebhookDelivery
from app.services import webhooks
from app.services.audit import Actor
from tests.support import keymint_cli
from tests.webhook_support import (
    Reply,
    WorkerProcess,
    deliveries,
    make_endpoint,
    receiving,
    wait_for,
    workspace_id,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Collects the worker processes a test starts; each is stopped at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _start(workers: list[WorkerProcess], database_url: str) -> WorkerProcess:
    worker = WorkerProcess(database_url)
    workers.append(worker)
    return worker.start()


@pytest.fixture
def slug(factory):
    return factory.workspace(owner=factory.user())


def _queue_tests(app, slug, public_id, count=1):
    """`count` webhook.test deliveries, committed together; their public ids."""
    with app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        made = [webhooks.send_test(db.session, endpoint, Actor.cli()).public_id
                for _ in range(count)]
        db.session.commit()
        return made


def _delivery(app, public_id):
    return next(d for d in deliveries(app) if d.public_id == public_id)


def test_kill_9_mid_delivery_loses_nothing_and_a_restarted_worker_delivers_after_the_lease(
        app, slug, database_url, workers):
    # The receiver holds the first request open until the worker is dead, then answers 200.
    with receiving(Reply(200, hang=120)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        [claimed_id] = _queue_tests(app, slug, public_id)
        first = _start(workers, database_url)
        assert wait_for(lambda: receiver.requests, 60), first.output()[-2000:]
        first.kill()
        receiver.release.set()  # the held request ends; its answer has nobody to read it

        claimed = _delivery(app, claimed_id)
        # Nothing lost: still pending, one attempt counted, due again when the lease ends.
        assert (claimed.status, claimed.attempts) == ("pending", 1)
        assert claimed.next_attempt_at == claimed.last_attempt_at + webhooks.LEASE

        second = _start(workers, database_url)
        # The restarted worker works (it delivers a new event, queued by the real CLI) but
        # leaves the leased delivery alone while the lease lasts.
        queued = keymint_cli(database_url, "webhooks", "test", "--workspace", slug, public_id)
        fresh_id = queued.split()[-1]
        assert wait_for(lambda: _delivery(app, fresh_id).status == "succeeded", 60), \
            second.output()[-2000:]
        claimed = _delivery(app, claimed_id)
        assert (claimed.status, claimed.attempts) == ("pending", 1)
        assert len(receiver.requests) == 2

        # The lease runs out (moved forward rather than waited for: five minutes).
        with app.app_context():
            db.session.execute(update(WebhookDelivery)
                               .where(WebhookDelivery.public_id == claimed_id)
                               .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
            db.session.commit()
        assert wait_for(lambda: _delivery(app, claimed_id).status == "succeeded", 60), \
            second.output()[-2000:]
        assert second.stop() == 0
    done = _delivery(app, claimed_id)
    assert (done.attempts, done.response_status) == (2, 200)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 3
    # The killed attempt and its redelivery carry the same webhook-id (receivers dedupe).
    assert ids[0] == ids[2] and ids[1] != ids[0]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_worker_processes_never_deliver_the_same_attempt_twice(app, slug, database_url,
                                                                   workers):
    # The receiver numbers the attempts of each webhook-id as they arrive and keeps their
    # webhook-timestamp (the instant of the claim). It refuses the first (503) and takes the
    # second, so each delivery is claimed twice, by either worker. An attempt posted twice
    # would show as a third request for its id, or as two requests claimed together.
    attempts: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def answer(request):
        with lock:
            webhook_id = request.headers["webhook-id"]
            attempt = 1 + sum(1 for seen, _, _ in attempts if seen == webhook_id)
            attempts.append((webhook_id, attempt, int(request.headers["webhook-timestamp"])))
        time.sleep(0.05)  # slow enough that both workers are posting at the same time
        return Reply(503 if attempt == 1 else 200)

    # Four endpoints with five each: fewer refusals in a row than disable an endpoint.
    count = 20
    assert count // 4 < webhooks.DISABLE_AFTER_FAILURES
    with receiving(answer=answer) as receiver:
        endpoints = [make_endpoint(app, slug, f"{receiver.url}?n={n}")[0] for n in range(4)]
        pair = [_start(workers, database_url), _start(workers, database_url)]
        queued = [d for e in endpoints for d in _queue_tests(app, slug, e, count // 4)]
        # The second attempts wait for the backoff (30 to 37.5 s).
        assert wait_for(lambda: all(d.status == "succeeded" for d in deliveries(app)), 180), \
            "\n".join(w.output()[-1000:] for w in pair)
        assert [w.stop() for w in pair] == [0, 0]
    by_id: dict[str, list[tuple[int, int]]] = {}
    for webhook_id, attempt, stamp in attempts:
        by_id.setdefault(webhook_id, []).append((attempt, stamp))
    assert len(by_id) == count
    for webhook_id, seen in by_id.items():
        assert [n for n, _ in seen] == [1, 2], webhook_id  # each attempt arrived once
        assert seen[1][1] - seen[0][1] >= 29, webhook_id  # the retry came after its backoff
    assert {(d.attempts, d.response_status) for d in deliveries(app)} == {(2, 200)}
    assert sorted(d.public_id for d in deliveries(app)) == sorted(queued)


def test_the_long_running_worker_delivers_and_stops_on_sigterm(app, slug, database_url,
                                                               workers):
    with receiving() as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        worker = _start(workers, database_url)
        [delivery_id] = _queue_tests(app, slug, public_id)
        assert wait_for(lambda: _delivery(app, delivery_id).status == "succeeded", 60), \
            worker.output()[-2000:]
        assert worker.stop() == 0
    assert "webhook worker stopped" in worker.output()
    assert len(receiver.requests) == 1
