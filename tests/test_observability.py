"""Day-2 signals: /readyz and /metrics on a rate-limit storage outage, the database pool's
metrics, and what the request log line tells about the caller and the error."""

from __future__ import annotations

import json
import logging

import pytest
from freezegun import freeze_time
from limits.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy import create_engine
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.runtime import database, limiter
from app.runtime.logs import JsonFormatter
from tests.support import bearer, mint, token_response
from tests.test_metrics import scrape, value
from tests.test_ratelimit_storage import FlakyStorage

# --- /readyz and the rate-limit storage --------------------------------------------------


def metric(client, name: str) -> float:
    return value(scrape(client.get("/metrics").get_data(as_text=True)), name)


def test_readyz_is_ready_but_degraded_while_rate_limits_are_counted_per_process(
        database_url, app_factory):
    app, _ = app_factory(database_url, KEYMINT_RATELIMIT_ENABLED=True)
    shared = FlakyStorage()  # stands in for Redis
    counter = app.extensions[limiter._EXTENSION]
    counter.primary, counter._primary = shared, SlidingWindowCounterRateLimiter(shared)
    client = app.test_client()
    with freeze_time("2030-01-01T00:00:00Z") as clock:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json() == {"status": "ok", "database": "ok",
                                    "rate_limit_storage": "ok", "degraded": []}
        fallbacks = metric(client, "keymint_rate_limit_storage_fallbacks_total")
        assert metric(client, "keymint_rate_limit_storage_fallback") == 0

        shared.down = True
        # any limited request meets the outage and is counted in memory instead
        assert token_response(client, ("key_nope", "sk_nope")).status_code == 401
        degraded = client.get("/readyz")
        assert degraded.status_code == 200  # still serving: limits hold per process
        assert degraded.get_json() == {"status": "degraded", "database": "ok",
                                       "rate_limit_storage": "fallback",
                                       "degraded": ["rate_limit_storage"]}
        assert metric(client, "keymint_rate_limit_storage_fallback") == 1
        assert metric(client, "keymint_rate_limit_storage_fallbacks_total") == fallbacks + 1

        shared.down = False
        clock.tick(0.5)  # the next check is not due yet: still the fallback
        assert client.get("/readyz").get_json()["rate_limit_storage"] == "fallback"
        clock.tick(0.5)  # due: the probe itself asks the storage, no request needed
        assert client.get("/readyz").get_json()["rate_limit_storage"] == "ok"
        assert metric(client, "keymint_rate_limit_storage_fallback") == 0


def test_readyz_names_switched_off_rate_limiting(client):
    body = client.get("/readyz").get_json()
    assert body["rate_limit_storage"] == "disabled" and body["degraded"] == []


# --- the database pool -----------------------------------------------------------------------


def sample(name: str) -> float:
    from app.runtime import metrics

    return metrics.REGISTRY.get_sample_value(name) or 0.0


def test_pool_metrics_count_connections_in_use_overflow_and_waits(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}",
                           poolclass=database.MeteredQueuePool, pool_size=1, max_overflow=1,
                           pool_timeout=0.01)
    waits, timeouts = sample("keymint_db_pool_waits_total"), sample(
        "keymint_db_pool_timeouts_total")
    try:
        first = engine.connect()
        assert sample("keymint_db_pool_connections_in_use") == 1
        assert sample("keymint_db_pool_overflow") == 0
        assert sample("keymint_db_pool_capacity") == 2
        second = engine.connect()  # beyond pool_size: an overflow connection, no wait
        assert sample("keymint_db_pool_connections_in_use") == 2
        assert sample("keymint_db_pool_overflow") == 1
        assert sample("keymint_db_pool_waits_total") == waits
        with pytest.raises(PoolTimeout):
            engine.connect()  # every connection in use: it waits, then gives up
        assert sample("keymint_db_pool_waits_total") == waits + 1
        assert sample("keymint_db_pool_timeouts_total") == timeouts + 1
        second.close()
        first.close()
        assert sample("keymint_db_pool_connections_in_use") == 0
    finally:
        engine.dispose()


def test_postgres_engines_use_the_metered_pool_and_metrics_list_it(app, client, backend):
    from app.extensions import db

    with app.app_context():
        pool = db.engine.pool
    assert isinstance(pool, database.MeteredQueuePool) == (backend == "postgres")
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("keymint_db_pool_connections_in_use", "keymint_db_pool_overflow",
                 "keymint_db_pool_capacity", "keymint_db_pool_waits_total",
                 "keymint_db_pool_timeouts_total", "keymint_rate_limit_storage_fallback"):
        assert f"\n{name} " in text, name


# --- the request log line --------------------------------------------------------------------


def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "keymint.request"]


def test_the_request_line_names_the_client_the_error_and_the_user_agent(client, factory,
                                                                       caplog):
    caplog.set_level(logging.INFO, logger="keymint.request")
    key = factory.key(scopes="keys:read")
    token = mint(client, key)
    caplog.clear()
    long_agent = "integration/2.0 " + "x" * 400
    client.get("/api/v1/keys", headers={**bearer(token), "User-Agent": long_agent})
    client.get("/api/v1/members", headers={**bearer(token), "User-Agent": "cron/1"})
    token_response(client, (key.client_id, "sk_wrong"))
    client.get("/api/v1/keys", headers={"Authorization": "Bearer at_unknown"})
    client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=key.auth)
    ok, scope, wrong, unknown, minted = request_records(caplog)

    assert (ok.status, ok.client_id, ok.error_code) == (200, key.client_id, None)
    assert ok.user_agent == long_agent[:256]
    # authenticated, but the route needs another scope: both facts are on the line
    assert (scope.status, scope.client_id, scope.error_code, scope.user_agent) == (
        403, key.client_id, "insufficient_scope", "cron/1")
    # a wrong secret never authenticated: no client_id, the OAuth error code
    assert (wrong.status, wrong.client_id, wrong.error_code) == (401, None, "invalid_client")
    assert (unknown.status, unknown.client_id, unknown.error_code) == (
        401, None, "invalid_token")
    assert (minted.status, minted.client_id, minted.error_code) == (200, key.client_id, None)

    line = json.loads(JsonFormatter().format(scope))
    assert (line["client_id"], line["error_code"], line["user_agent"]) == (
        key.client_id, "insufficient_scope", "cron/1")
    assert "error_code" not in json.loads(JsonFormatter().format(ok))


def test_api_errors_carry_their_code_and_a_missing_agent_is_left_out(client, caplog):
    caplog.set_level(logging.INFO, logger="keymint.request")
    client.get("/api/v1/keys", environ_base={"HTTP_USER_AGENT": ""})
    client.get("/no/such/route")
    missing, not_found = request_records(caplog)
    assert (missing.status, missing.error_code) == (401, "missing_authorization")
    assert missing.user_agent is None and missing.client_id is None
    assert (not_found.status, not_found.error_code) == (404, "not_found")
