"""app.services.pagination: the one cursor format, and cursors of the first audit release."""

from __future__ import annotations

import base64
import json

import pytest

from app.services import pagination
from app.services.errors import InvalidInput
from tests.support import make_team


def test_a_cursor_round_trips_and_names_its_listing():
    cursor = pagination.encode_cursor("keys", 42)
    assert "=" not in cursor
    assert pagination.decode_cursor("keys", cursor, rejection="no") == 42
    with pytest.raises(InvalidInput) as caught:
        pagination.decode_cursor("audit", cursor, rejection="not this listing's")
    assert caught.value.field == "cursor" and caught.value.message == "not this listing's"


@pytest.mark.parametrize("cursor", ["", "garbage!", "a2V5czp4", "a" * 65,
                                    pagination.encode_cursor("keys", 10**18)])
def test_anything_else_is_rejected(cursor):
    with pytest.raises(InvalidInput):
        pagination.decode_cursor("keys", cursor, rejection="no")


class Row:
    def __init__(self, id: int) -> None:
        self.id = id


def test_cut_keeps_limit_rows_and_names_the_last_only_when_there_is_more():
    rows = [Row(i) for i in (9, 8, 7)]
    assert pagination.cut(rows, 2) == (rows[:2], 8)
    assert pagination.cut(rows, 3) == (rows, None)
    assert pagination.cut([], 3) == ([], None)


def _v1_cursor(before: int) -> str:
    raw = json.dumps({"v": 1, "before": before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_an_audit_cursor_of_the_first_release_still_continues_the_walk(client, factory):
    owner = make_team(client, factory)["owner"]
    first = client.get("/api/v1/audit-events", headers=owner.headers,
                       query_string={"limit": 2}).get_json()
    after_new = client.get("/api/v1/audit-events", headers=owner.headers,
                           query_string={"limit": 2, "cursor": first["next_cursor"]})
    after_old = client.get("/api/v1/audit-events", headers=owner.headers,
                           query_string={"limit": 2,
                                         "cursor": _v1_cursor(int(first["events"][-1]["id"]))})
    assert after_old.status_code == after_new.status_code == 200
    assert after_old.get_json() == after_new.get_json()
    assert int(after_new.get_json()["events"][0]["id"]) < int(first["events"][-1]["id"])
