"""/api/v1/webhooks: admins manage endpoints, secrets shown once, deliveries newest first."""

from __future__ import annotations

import pytest

from app.services import webhooks
from tests.support import all_rows, audit_events, make_team
from tests.webhook_support import events


@pytest.fixture
def private_ok(app_factory, database_url):
    """An app with KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS on (receivers on 127.0.0.1)."""
    app, factory = app_factory(database_url, KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    client = app.test_client()
    team = make_team(client, factory)
    team.factory = factory  # for a second workspace
    return app, client, team


def _create(client, person, **body):
    body.setdefault("url", "http://127.0.0.1:9/hook")
    return client.post("/api/v1/webhooks", headers=person.headers, json=body)


def test_an_admin_creates_an_endpoint_and_sees_its_secret_only_then(private_ok):
    app, client, team = private_ok
    r = _create(client, team["admin"], event_types=["key.created", "key.expiring"],
                expiring_days=[14, 3], description="ops pager")
    assert r.status_code == 201, r.get_json()
    made = r.get_json()
    assert made["secret"].startswith("whsec_")
    assert r.headers["Location"] == f"/api/v1/webhooks/{made['id']}"
    assert (made["event_types"], made["expiring_days"], made["enabled"]) == (
        ["key.created", "key.expiring"], [14, 3], True)
    listed = client.get("/api/v1/webhooks", headers=team["owner"].headers).get_json()
    assert [w["id"] for w in listed["webhooks"]] == [made["id"]]
    read = client.get(f"/api/v1/webhooks/{made['id']}", headers=team["owner"].headers)
    assert "secret" not in read.get_json() and made["secret"] not in read.get_data(as_text=True)
    assert [e.target_id for e in audit_events(app, "webhook.created")] == [made["id"]]


def test_members_cannot_see_or_manage_webhooks(private_ok):
    _, client, team = private_ok
    made = _create(client, team["owner"]).get_json()
    member = team["member"]
    for method, path in [("get", "/api/v1/webhooks"), ("post", "/api/v1/webhooks"),
                         ("get", f"/api/v1/webhooks/{made['id']}"),
                         ("post", f"/api/v1/webhooks/{made['id']}/test")]:
        r = getattr(client, method)(path, headers=member.headers, json={"url": "http://x/"})
        assert r.status_code == 403 and r.get_json()["error"] == "forbidden", (method, path)


def test_private_targets_are_refused_without_the_switch(client, factory):
    team = make_team(client, factory)
    for url in ("http://127.0.0.1:9/hook", "https://169.254.169.254/latest",
                "https://10.0.0.1/", "https://localhost/x"):
        r = _create(client, team["owner"], url=url)
        assert r.status_code == 400 and r.get_json()["field"] == "url", url


@pytest.mark.parametrize("body", [
    {"url": "http://127.0.0.1:9/", "event_types": ["key.nope"]},
    {"url": "http://127.0.0.1:9/", "expiring_days": [0]},
    {"url": "http://127.0.0.1:9/", "secret": "whsec_mine"},
    {},
])
def test_bad_bodies_get_a_400_naming_the_problem(private_ok, body):
    _, client, team = private_ok
    r = client.post("/api/v1/webhooks", headers=team["owner"].headers, json=body)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"


def test_update_rotate_test_deliveries_retry_and_delete(private_ok):
    app, client, team = private_ok
    owner = team["owner"]
    made = _create(client, owner).get_json()
    base = f"/api/v1/webhooks/{made['id']}"

    r = client.patch(base, headers=owner.headers, json={"enabled": False,
                                                        "event_types": ["key.revoked"]})
    assert r.status_code == 200
    assert (r.get_json()["enabled"], r.get_json()["disabled_reason"]) == (False,
                                                                          "disabled_by_user")
    r = client.patch(base, headers=owner.headers, json={"enabled": True})
    assert (r.get_json()["enabled"], r.get_json()["disabled_reason"]) == (True, None)

    rotated = client.post(f"{base}/rotate-secret", headers=owner.headers).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    assert rotated["previous_secret_expires_at"] is not None

    first = client.post(f"{base}/test", headers=owner.headers)
    second = client.post(f"{base}/test", headers=owner.headers)
    assert first.status_code == second.status_code == 202
    assert first.get_json()["event_type"] == "webhook.test"
    assert first.get_json()["status"] == "pending"
    assert [e.type for e in events(app)] == ["webhook.test", "webhook.test"]

    page = client.get(f"{base}/deliveries?limit=1", headers=owner.headers).get_json()
    assert [d["id"] for d in page["deliveries"]] == [second.get_json()["id"]]
    rest = client.get(f"{base}/deliveries?limit=1&cursor={page['next_cursor']}",
                      headers=owner.headers).get_json()
    assert [d["id"] for d in rest["deliveries"]] == [first.get_json()["id"]]
    assert rest["next_cursor"] is None
    bad = client.get(f"{base}/deliveries?cursor=nonsense", headers=owner.headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "cursor"

    retried = client.post(f"{base}/deliveries/{first.get_json()['id']}/retry",
                          headers=owner.headers)
    assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
    missing = client.post(f"{base}/deliveries/whd_{'x' * 24}/retry", headers=owner.headers)
    assert missing.status_code == 404

    assert client.delete(base, headers=owner.headers).status_code == 204
    assert client.get(base, headers=owner.headers).status_code == 404
    assert [e.action for e in audit_events(app) if e.action.startswith("webhook.")] == [
        "webhook.created", "webhook.updated", "webhook.updated", "webhook.secret_rotated",
        "webhook.tested", "webhook.tested", "webhook.delivery_retried", "webhook.deleted"]


def test_another_workspaces_endpoint_does_not_exist_for_the_caller(private_ok):
    _, client, team = private_ok
    made = _create(client, team["owner"]).get_json()
    other = make_team(client, team.factory)
    for method in ("get", "patch", "delete"):
        r = getattr(client, method)(f"/api/v1/webhooks/{made['id']}",
                                    headers=other["owner"].headers, json={})
        assert r.status_code == 404, method


def test_a_request_that_fails_after_queuing_an_event_leaves_neither_change_nor_event(
        private_ok, monkeypatch):
    """The outbox row is in the request's transaction: a failure after emit() rolls back
    the revocation and its key.revoked together."""
    app, client, team = private_ok
    owner = team["owner"]
    _create(client, owner, event_types=["key.revoked"])
    victim = team["member"].key.client_id
    real_emit = webhooks.emit

    def emit_then_fail(*args, **kwargs):
        real_emit(*args, **kwargs)
        raise RuntimeError("the process dies before the commit")

    monkeypatch.setattr(webhooks, "emit", emit_then_fail)
    failed = client.delete(f"/api/v1/keys/{victim}", headers=owner.headers)
    assert failed.status_code == 500
    monkeypatch.undo()
    assert events(app) == [] and all_rows(app, "webhook_deliveries") == []
    read = client.get(f"/api/v1/keys/{victim}", headers=owner.headers).get_json()
    assert read["state"] == "active"
    assert client.delete(f"/api/v1/keys/{victim}", headers=owner.headers).status_code == 204
    assert [e.type for e in events(app)] == ["key.revoked"]


def test_readyz_does_not_depend_on_receivers(private_ok):
    _, client, team = private_ok
    made = _create(client, team["owner"], url="http://127.0.0.1:1/down").get_json()
    client.post(f"/api/v1/webhooks/{made['id']}/test", headers=team["owner"].headers)
    assert client.get("/readyz").status_code == 200
