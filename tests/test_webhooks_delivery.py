"""The delivery worker against real HTTP receivers on 127.0.0.1: signing, retries, backoff,
timeouts, disabling, targets re-checked at delivery, concurrent workers in one process, and
the backlog metrics (real worker processes: tests/test_webhooks_workers.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app.extensions import db
from app.runtime import webhook_worker
from app.services import webhooks
from app.services.audit import Actor
from tests.support import audit_events
from tests.webhook_support import (
    Reply,
    deliveries,
    events,
    make_endpoint,
    receiving,
    run_worker,
    workspace_id,
)

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def slug(factory):
    return factory.workspace(owner=factory.user())


def _queue_test(app, slug, public_id):
    """A webhook.test event for the endpoint, queued now; returns the delivery's id."""
    with app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        delivery = webhooks.send_test(db.session, endpoint, Actor.cli())
        db.session.commit()
        return delivery.public_id


def _endpoint_row(app, slug, public_id):
    with app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        db.session.expunge(endpoint)
        return endpoint


def test_a_delivery_is_signed_so_an_independent_verifier_accepts_it(app, factory, slug):
    from standardwebhooks.webhooks import Webhook

    with receiving() as receiver:
        _, secret = make_endpoint(app, slug, receiver.url + "?source=keymint",
                                  event_types=["key.created"])
        factory.key(slug, scopes="read")  # key.created
        stats = run_worker(app)
    assert (stats.delivered, stats.retried, stats.failed) == (1, 0, 0)
    [request] = receiver.requests
    assert request.path == "/hook?source=keymint"
    payload = Webhook(secret).verify(request.body, request.headers)
    [event] = events(app)
    assert payload["type"] == "key.created" and payload["id"] == event.public_id
    assert payload["workspace_id"] == str(workspace_id(app, slug))
    assert request.headers["webhook-id"] == event.public_id
    assert request.headers["content-type"] == "application/json"
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 1,
                                                                              200)
    assert delivery.duration_ms is not None and delivery.completed_at is not None


def test_during_a_secret_rotation_both_secrets_sign(app, slug):
    from standardwebhooks.webhooks import Webhook

    with receiving() as receiver:
        public_id, old = make_endpoint(app, slug, receiver.url)
        with app.app_context():
            endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
            new = webhooks.rotate_secret(db.session, endpoint, Actor.cli()).secret
            db.session.commit()
        _queue_test(app, slug, public_id)
        run_worker(app)
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver still on the old secret keeps verifying
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "webhook.test"


def test_fails_twice_then_succeeds_with_backoff_respected_and_one_webhook_id(app, slug):
    with receiving(Reply(500), Reply(503), Reply(200)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with freeze_time(T0) as clock:
            _queue_test(app, slug, public_id)
            assert run_worker(app).retried == 1
            [first] = deliveries(app)
            delay = first.next_attempt_at - T0
            assert timedelta(seconds=30) <= delay <= timedelta(seconds=37.5)
            clock.move_to(first.next_attempt_at - timedelta(microseconds=1))
            assert run_worker(app).retried == 0 and len(receiver.requests) == 1  # not yet due
            clock.move_to(first.next_attempt_at)
            assert run_worker(app).retried == 1
            [second] = deliveries(app)
            delay = second.next_attempt_at - first.next_attempt_at
            assert timedelta(seconds=60) <= delay <= timedelta(seconds=75)  # doubled
            clock.move_to(second.next_attempt_at)
            assert run_worker(app).delivered == 1
            clock.tick(timedelta(days=1))
            assert run_worker(app).attempted == 0  # delivered once, never again
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    [done] = deliveries(app)
    assert (done.status, done.attempts, done.response_status) == ("succeeded", 3, 200)
    assert _endpoint_row(app, slug, public_id).consecutive_failures == 0


def test_retry_after_is_honoured_and_a_4xx_fails_at_once(app, slug):
    with receiving(Reply(429, {"Retry-After": "600"}), Reply(410)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with freeze_time(T0) as clock:
            _queue_test(app, slug, public_id)
            run_worker(app)
            [delivery] = deliveries(app)
            assert delivery.next_attempt_at == T0 + timedelta(seconds=600)
            clock.move_to(delivery.next_attempt_at)
            assert run_worker(app).failed == 1
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.response_status, delivery.next_attempt_at) == (
        "failed", 410, None)
    assert len(receiver.requests) == 2


def test_a_redirect_is_not_followed(app, slug):
    with receiving(Reply(302, {"Location": "http://127.0.0.1:1/elsewhere"})) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        _queue_test(app, slug, public_id)
        assert run_worker(app).failed == 1
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert deliveries(app)[0].response_status == 302


def test_the_retry_window_ends_24_hours_after_the_event(app, slug):
    public_id, _ = make_endpoint(app, slug, "http://127.0.0.1:9/never")
    with freeze_time(T0):
        _queue_test(app, slug, public_id)
    [delivery] = deliveries(app)
    failing = webhooks.Outcome(status=500)
    with app.app_context():
        # The next retry would still fall inside the window: pending.
        row = webhooks.record_outcome(db.session, delivery.id, failing,
                                      T0 + timedelta(hours=23), rng=_Fixed(0.0))
        assert row.status == "pending"
        # Any backoff from here would end past T0 + 24 h: failed, no further attempt.
        row = webhooks.record_outcome(db.session, delivery.id, failing,
                                      T0 + timedelta(hours=24) - timedelta(seconds=1),
                                      rng=_Fixed(0.0))
        assert (row.status, row.next_attempt_at) == ("failed", None)
        db.session.commit()
    with freeze_time(T0 + timedelta(days=2)), app.app_context():
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id)
        row = webhooks.retry_delivery(db.session, endpoint,
                                      webhooks.get_delivery(db.session, endpoint,
                                                            delivery.public_id), Actor.cli())
        # A manual retry opens a fresh window.
        assert row.retry_until == T0 + timedelta(days=3)
        row = webhooks.record_outcome(db.session, delivery.id, failing,
                                      T0 + timedelta(days=2), rng=_Fixed(0.0))
        assert (row.status, row.next_attempt_at) == ("pending",
                                                     T0 + timedelta(days=2, seconds=30))
        db.session.rollback()


class _Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, low: float, high: float) -> float:
        return low + self.value * (high - low)


def test_an_always_failing_receiver_disables_the_endpoint_after_the_threshold(app, slug):
    with receiving(default=Reply(500)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with freeze_time(T0) as clock:
            _queue_test(app, slug, public_id)
            for attempt in range(1, webhooks.DISABLE_AFTER_FAILURES + 1):
                assert run_worker(app).attempted == 1
                endpoint = _endpoint_row(app, slug, public_id)
                if attempt < webhooks.DISABLE_AFTER_FAILURES:
                    assert endpoint.enabled, attempt
                    clock.move_to(deliveries(app)[0].next_attempt_at)
            assert not endpoint.enabled
            assert endpoint.disabled_reason == "consecutive_failures"
            clock.tick(timedelta(hours=1))
            assert run_worker(app).attempted == 0  # a disabled endpoint gets nothing
            _queue_test(app, slug, public_id)
    assert len(receiver.requests) == webhooks.DISABLE_AFTER_FAILURES
    [notice] = audit_events(app, "webhook.disabled")
    assert (notice.target_id, notice.actor_type) == (public_id, "system")


def test_a_hanging_receiver_times_out_and_is_retried(app, slug, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.3)
    with receiving(Reply(200, hang=30)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        _queue_test(app, slug, public_id)
        assert run_worker(app).retried == 1
    [delivery] = deliveries(app)
    assert delivery.status == "pending" and "timed out" in delivery.last_error
    assert delivery.response_status is None


def test_a_name_re_pointed_at_a_private_address_is_refused_at_delivery(app, slug, monkeypatch):
    with receiving() as receiver:
        port = receiver.server.server_address[1]
        public_id, _ = make_endpoint(app, slug, f"http://hooks.example.com:{port}/hook")
        _queue_test(app, slug, public_id)
        monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["127.0.0.1"])
        with app.app_context():
            stats = webhook_worker.run_once(db.session, allow_private=False)
    assert stats.failed == 1 and receiver.requests == []
    [delivery] = deliveries(app)
    assert delivery.status == "failed" and "target refused" in delivery.last_error


def test_two_workers_never_deliver_the_same_attempt_twice(app, app_factory, database_url,
                                                          slug):
    with receiving() as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        for _ in range(30):
            _queue_test(app, slug, public_id)
        apps = [app, app_factory(database_url)[0]]
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def work(one):
            try:
                start.wait()
                run_worker(one)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(a,)) for a in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert {d.status for d in deliveries(app)} == {"succeeded"}
    assert {d.attempts for d in deliveries(app)} == {1}


def _sample(registry, name, **labels):
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_show_attempts_by_outcome_and_the_backlog(app, slug):
    registry = webhook_worker.metrics_registry(app)
    before = {o: _sample(registry, "keymint_webhook_attempts_total", outcome=o)
              for o in ("delivered", "retried", "failed")}
    with receiving(Reply(500), Reply(200), Reply(404)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with freeze_time(T0) as clock:
            for _ in range(3):
                _queue_test(app, slug, public_id)
            run_worker(app)  # one retried, one delivered, one failed
            assert _sample(registry, "keymint_webhook_deliveries_queued") == 1
            assert _sample(registry, "keymint_webhook_deliveries_due") == 0
            assert _sample(registry, "keymint_webhook_deliveries_failed") == 1
            assert _sample(registry, "keymint_webhook_oldest_due_age_seconds") == 0
            due = next(d for d in deliveries(app) if d.status == "pending").next_attempt_at
            clock.move_to(due)  # due this instant: waiting, for no time yet
            assert _sample(registry, "keymint_webhook_deliveries_due") == 1
            assert _sample(registry, "keymint_webhook_oldest_due_age_seconds") == 0
            clock.move_to(due + timedelta(seconds=90))  # due, not yet attempted
            assert _sample(registry, "keymint_webhook_oldest_due_age_seconds") == 90
    for outcome in ("retried", "delivered", "failed"):
        assert _sample(registry, "keymint_webhook_attempts_total",
                       outcome=outcome) - before[outcome] == 1


def _scrape(client):
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    return {sample.name: sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name.startswith("keymint_webhook_")}


def test_the_servers_own_metrics_show_the_backlog_as_stored(app, client, slug):
    # The API server posts nothing; it reads the outbox at each scrape, like the worker.
    assert _scrape(client) == {"keymint_webhook_deliveries_queued": 0,
                               "keymint_webhook_deliveries_due": 0,
                               "keymint_webhook_deliveries_failed": 0,
                               "keymint_webhook_oldest_due_age_seconds": 0}
    with receiving(Reply(410)) as receiver:
        public_id, _ = make_endpoint(app, slug, receiver.url)
        with freeze_time(T0) as clock:
            _queue_test(app, slug, public_id)
            assert run_worker(app).failed == 1
            _queue_test(app, slug, public_id)
            _queue_test(app, slug, public_id)
            clock.tick(timedelta(minutes=2))
            assert _scrape(client) == {"keymint_webhook_deliveries_queued": 2,
                                       "keymint_webhook_deliveries_due": 2,
                                       "keymint_webhook_deliveries_failed": 1,
                                       "keymint_webhook_oldest_due_age_seconds": 120}
            assert client.get("/readyz").status_code == 200  # receivers are not its business


def test_the_servers_metrics_answer_without_the_backlog_when_the_database_fails(
        app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(session, now):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(webhooks, "backlog", down)
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "# TYPE keymint_http_requests_total counter" in text  # the process's own metrics
    assert "keymint_webhook_deliveries_queued" not in text


def test_an_endpoint_deleted_during_a_delivery_ends_it_quietly(app, slug):
    public_id, _ = make_endpoint(app, slug, "http://127.0.0.1:9/x")
    _queue_test(app, slug, public_id)
    with app.app_context():
        [job] = webhooks.claim(db.session, datetime.now(UTC))
        db.session.commit()
        endpoint = webhooks.get_endpoint(db.session, workspace_id(app, slug), public_id,
                                         lock=True)
        webhooks.delete_endpoint(db.session, endpoint, Actor.cli())
        db.session.commit()
        assert webhooks.record_outcome(db.session, job.delivery_id,
                                       webhooks.Outcome(status=200), datetime.now(UTC)) is None
        db.session.commit()
    assert deliveries(app) == []
