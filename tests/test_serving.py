"""`keymint serve`'s --bind forms, as app/serving.py hands them to Granian."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.serving import parse_bind

ANY = "0.0.0.0"  # noqa: S104 (parsed, never bound)


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:8000", {"address": "127.0.0.1", "port": 8000}),
    (f"{ANY}:9000", {"address": ANY, "port": 9000}),
    ("localhost", {"address": "localhost", "port": 8000}),
    (":8080", {"address": ANY, "port": 8080}),
    ("[::1]:8443", {"address": "::1", "port": 8443}),
    ("[::]", {"address": "::", "port": 8000}),
    ("unix:/run/keymint.sock", {"uds": Path("/run/keymint.sock")}),
])
def test_bind_forms(bind, expected):
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["127.0.0.1:http", "[::1]:x", "[::1"])
def test_bad_bind_is_an_error(bind):
    with pytest.raises(ValueError):
        parse_bind(bind)
