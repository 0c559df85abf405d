"""The README's Flask quickstart runs as written (against a fake keymint on loopback)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from conftest import FakeKeymint, make_key

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quickstart_protects_a_route(fake_keymint: FakeKeymint):
    text = README.read_text("utf-8")
    section = text[text.index("## Quickstart (Flask)"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    code = code.replace("https://keymint.example.com", fake_keymint.url)
    namespace: dict = {"__name__": "readme_quickstart"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    client = namespace["app"].test_client()

    key = make_key("EC", "k1")
    fake_keymint.keys.append(key)
    now = int(time.time())
    token = fake_keymint.sign(key, aud="https://orders.example.com", iat=now, exp=now + 300)
    ok = client.get("/v1/orders/5", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.get_json() == {"id": 5, "owner": "42"}
    assert client.get("/v1/orders/5").status_code == 401
    other = fake_keymint.sign(key, aud="https://orders.example.com", scope="orders:write",
                              iat=now, exp=now + 300)
    assert client.get("/v1/orders/5",
                      headers={"Authorization": f"Bearer {other}"}).status_code == 403
