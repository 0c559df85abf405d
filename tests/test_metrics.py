"""GET /metrics (Prometheus), counters for tokens, failures and legacy use; /readyz timeout."""

from __future__ import annotations

import os
import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.runtime import database
from tests.support import ServerProcess, mint, token_response


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_tokens_and_failures(client, factory):
    key = factory.key()
    before = scrape(client.get("/metrics").get_data(as_text=True))
    token = mint(client, key)
    token_response(client, (key.client_id, "sk_wrong"))
    rotated = client.post("/oauth/rotate", data={"token": token}, auth=key.auth).get_json()
    client.post("/oauth/revoke", data={"token": rotated["access_token"]}, auth=key.auth)
    client.post("/oauth/revoke", data={"token": rotated["access_token"]}, auth=key.auth)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    after = scrape(response.get_data(as_text=True))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("keymint_tokens_issued_total", grant="client_credentials") == 1
    assert delta("keymint_tokens_issued_total", grant="rotation") == 1
    assert delta("keymint_tokens_rotated_total") == 1
    assert delta("keymint_tokens_revoked_total", reason="revoked") == 1  # the second is a no-op
    assert delta("keymint_auth_failures_total", reason="wrong_secret") == 1
    assert delta("keymint_http_requests_total", endpoint="/oauth/token", method="POST",
                 status="200") == 1
    assert delta("keymint_http_requests_total", endpoint="/oauth/token", method="POST",
                 status="401") == 1
    assert delta("keymint_http_request_duration_seconds_count", endpoint="/oauth/revoke",
                 method="POST", status="200") == 2


def counters(client) -> dict[tuple[str, tuple], float]:
    return scrape(client.get("/metrics").get_data(as_text=True))


def test_token_counters_do_not_depend_on_auditing(database_url, app_factory, factory):
    """KEYMINT_AUDIT_ENABLED=false writes no events; the token counters still move."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import AuditEvent

    app, _ = app_factory(database_url, KEYMINT_AUDIT_ENABLED=False)
    client = app.test_client()
    key = factory.key(scopes="introspect keys:read keys:write")
    with app.app_context():
        events_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
        db.session.rollback()
    before = counters(client)
    token = mint(client, key)
    rotated = client.post("/oauth/rotate", data={"token": token}, auth=key.auth).get_json()
    assert client.post("/oauth/rotate", data={"token": token},
                       auth=key.auth).status_code == 400  # reuse: the lineage is revoked
    mint(client, key)
    manager = mint(client, key, scope="keys:write")
    bulk = client.delete(f"/api/v1/keys/{key.client_id}/tokens",
                         headers={"Authorization": f"Bearer {manager}"})
    after = counters(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert rotated["access_token"]
    assert delta("keymint_tokens_issued_total", grant="client_credentials") == 3
    assert delta("keymint_tokens_issued_total", grant="rotation") == 1
    assert delta("keymint_tokens_rotated_total") == 1
    assert delta("keymint_tokens_revoked_total", reason="reuse_detected") == 1
    assert bulk.status_code == 200, bulk.get_json()
    assert delta("keymint_tokens_revoked_total", reason="bulk_revoked") == bulk.get_json()[
        "revoked"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events_before
        db.session.rollback()


def test_legacy_key_uses_are_counted_by_outcome(client, factory):
    from freezegun import freeze_time

    from tests.support import SUNSET, add_legacy_key, me

    add_legacy_key(client.application, factory.workspace(), "legacy-metrics-key")
    before = counters(client)
    with freeze_time("2025-06-01T12:00:00Z"):
        assert me(client, "legacy-metrics-key").status_code == 200
    with freeze_time(SUNSET):
        assert me(client, "legacy-metrics-key").status_code == 401
    assert me(client, "no-such-legacy-key").status_code == 401  # unknown: not a use of a key
    after = counters(client)
    name = "keymint_legacy_key_uses_total"
    assert value(after, name, outcome="accepted") - value(before, name, outcome="accepted") == 1
    assert value(after, name, outcome="sunset") - value(before, name, outcome="sunset") == 1
    client.application.extensions["keymint_legacy_usage"].discard()


def test_rolled_back_tokens_are_not_counted(app, client, factory, monkeypatch):
    """A token issued in a transaction whose commit fails is neither stored nor counted."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from app.extensions import db
    from app.models import AccessToken

    key = factory.key()
    before = scrape(client.get("/metrics").get_data(as_text=True))

    def refuse_commit() -> None:
        raise OperationalError("COMMIT", {}, Exception("the disk is full"))

    with monkeypatch.context() as patch:
        patch.setattr(db.session, "commit", refuse_commit)
        assert token_response(client, key).status_code == 503  # issued, then rolled back
    after = scrape(client.get("/metrics").get_data(as_text=True))
    name = "keymint_tokens_issued_total"
    assert value(after, name, grant="client_credentials") == value(
        before, name, grant="client_credentials")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccessToken)) == 0
    assert token_response(client, key).status_code == 200  # and counting resumes
    counted = scrape(client.get("/metrics").get_data(as_text=True))
    assert value(counted, name, grant="client_credentials") == value(
        before, name, grant="client_credentials") + 1


def test_unmatched_paths_share_one_label(client):
    client.get("/random/path/1")
    client.get("/random/path/2")
    text = client.get("/metrics").get_data(as_text=True)
    assert "/random/path" not in text
    assert 'endpoint="<unmatched>"' in text


def test_readyz_answers_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json()["database"] == "ok"


def test_readyz_times_out_on_a_slow_database(app, client, backend, monkeypatch):
    app.config["KEYMINT_READYZ_TIMEOUT_MS"] = 300
    slow = ("SELECT pg_sleep(30)" if backend == "postgres" else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")  # never ends on its own
    monkeypatch.setattr(database, "READINESS_PROBE", slow)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "unreachable",
                                   "rate_limit_storage": "disabled", "degraded": []}
    monkeypatch.setattr(database, "READINESS_PROBE", "SELECT 1")
    assert client.get("/readyz").status_code == 200  # the connection is usable again


def test_readyz_unavailable_when_the_database_is_unreachable(tmp_path):
    from app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI":
                      "postgresql+psycopg://postgres@127.0.0.1:1/none",
                      "KEYMINT_RATELIMIT_ENABLED": False})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503


@pytest.mark.slow
def test_multiprocess_metrics_sum_all_workers_and_the_directory_is_removed(
        database_url, factory, tmp_path):
    key = factory.key()
    server = ServerProcess(database_url, workers=2, env={"TMPDIR": str(tmp_path)}).start()
    try:
        for _ in range(6):  # a fresh connection each time: both workers answer some
            with requests.Session() as session:
                assert session.post(server.url + "/oauth/token", auth=key.auth, timeout=10,
                                    data={"grant_type": "client_credentials"}).status_code == 200
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("keymint-metrics-")]
        totals = set()
        for _ in range(4):
            with requests.Session() as session:
                text = session.get(server.url + "/metrics", timeout=10).text
            totals.add(value(scrape(text), "keymint_tokens_issued_total",
                             grant="client_credentials"))
    finally:
        server.stop()
    assert totals == {6.0}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("keymint-metrics-")]


@pytest.mark.slow
def test_operator_metrics_dir_is_kept_and_emptied_of_stale_files(database_url, tmp_path):
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")
    server = ServerProcess(database_url, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    server.start()
    try:
        text = requests.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    assert re.search(r"^keymint_http_requests_total", text, re.M)
    assert directory.exists() and not (directory / "counter_999999.db").exists()
    assert os.listdir(directory)  # the workers' own files


METRICS_TOKEN = "mt_4u8Qm1Zr6YbV0cKp3sTx9wLe2hNj7dFa5gR"  # >= 32 characters


def test_metrics_token_protects_metrics(database_url, app_factory, caplog):
    app, _ = app_factory(database_url, KEYMINT_METRICS_TOKEN=METRICS_TOKEN)
    client = app.test_client()
    caplog.set_level("DEBUG")
    for headers in ({}, {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"},
                    {"Authorization": "Basic " + METRICS_TOKEN},
                    {"Authorization": "Bearer"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="keymint-metrics"'
        assert "keymint_" not in refused.get_data(as_text=True)
    allowed = client.get("/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN})
    assert allowed.status_code == 200 and "keymint_http_requests_total" in allowed.text
    assert client.get("/healthz").status_code == 200  # only /metrics is protected
    assert METRICS_TOKEN not in caplog.text and METRICS_TOKEN[:-1] not in caplog.text
    assert METRICS_TOKEN not in repr(app.config)


def test_metrics_stay_open_without_a_token(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer whatever"}
                      ).status_code == 200


@pytest.mark.parametrize("value", ["too-short", "x" * 31, "has space" * 8])
def test_an_invalid_metrics_token_is_refused_at_start(database_url, value):
    from app import create_app
    from app.config import ConfigError
    from tests.support import base_config

    with pytest.raises(ConfigError) as caught:
        create_app(base_config(database_url, KEYMINT_METRICS_TOKEN=value))
    assert "KEYMINT_METRICS_TOKEN" in str(caught.value) and value not in str(caught.value)


@pytest.mark.parametrize(("bind", "token", "warned"), [
    ("0.0.0.0:8000", None, True), ("[::]:8000", None, True), ("keymint.internal:80", None, True),
    ("0.0.0.0:8000", METRICS_TOKEN, False), ("127.0.0.1:8000", None, False),
    ("[::1]:8000", None, False), ("localhost:8000", None, False),
    ("unix:/run/keymint.sock", None, False)])
def test_serve_warns_when_metrics_are_open_off_loopback(database_url, app_factory, monkeypatch,
                                                        caplog, bind, token, warned):
    import app.runtime.server as server

    app, _ = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com",
                         KEYMINT_METRICS_TOKEN=token)
    started = []
    monkeypatch.setattr(server, "serve_wsgi", lambda *a, **kw: started.append(kw["bind"]))
    caplog.set_level("WARNING", logger="keymint.server")
    result = app.test_cli_runner().invoke(args=["serve", "--bind", bind])
    assert result.exit_code == 0, result.output
    assert started == [bind]
    messages = [r.getMessage() for r in caplog.records if r.name == "keymint.server"]
    assert bool(messages) is warned
    assert all("KEYMINT_METRICS_TOKEN" in m and METRICS_TOKEN not in m for m in messages)
