"""Query strings at the edges of their types: 400 naming the field, never a 500."""

import base64
import json

import pytest

from tests.support import make_team


def _cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("query, field", [
    ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
    ({"until": "9999-12-31T23:59:59-14:00"}, "until"),
    ({"cursor": _cursor({"v": 1, "before": True})}, "cursor"),
    ({"cursor": _cursor({"v": 1, "before": 10**30})}, "cursor"),
    ({"limit": "0"}, "limit"),
    ({"unknown": "x"}, "unknown"),
])
def test_audit_events_rejects_out_of_range_queries(client, factory, query, field):
    owner = make_team(client, factory)["owner"]
    response = client.get("/api/v1/audit-events", headers=owner.headers, query_string=query)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field


@pytest.mark.parametrize("query, field", [
    ({"cursor": "9" * 30}, "cursor"),
    ({"cursor": "-1"}, "cursor"),
    ({"cursor": "１２"}, "cursor"),  # full-width digits  # noqa: RUF001
    ({"limit": "501"}, "limit"),
    ({"extra": "1"}, "extra"),
])
def test_legacy_keys_rejects_out_of_range_queries(client, factory, query, field):
    owner = make_team(client, factory)["owner"]
    response = client.get("/api/v1/legacy-keys", headers=owner.headers, query_string=query)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field
