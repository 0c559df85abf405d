"""Introspection edge cases against a fake keymint on loopback: route decisions (`allowed`),
audience and issuer of the answer, an unreachable or failing endpoint, the cache's bound."""

from __future__ import annotations

import logging

import pytest
from conftest import NOW, Clock, FakeKeymint
from keymint_resource import InsufficientScope, InvalidToken, TokenVerifier, VerifierUnavailable
from keymint_resource.cache import IntrospectionCache


def verifier(fake: FakeKeymint, clock: Clock, **options) -> TokenVerifier:
    return TokenVerifier(fake.url, "key_rs", "sk_rs", clock=clock, **options)


def active(fake: FakeKeymint, **extra) -> dict:
    return {"active": True, "iss": fake.url, "sub": "42", "client_id": "key_c",
            "scope": "orders:read", "exp": NOW + 300, "workspace_id": "7", **extra}


def test_introspection_authenticates_with_the_resource_servers_key(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint)
    verifier(fake_keymint, clock).verify("at_token")
    assert fake_keymint.auth[0].startswith("Basic ")
    assert fake_keymint.forms == [{"token": "at_token", "token_type_hint": "access_token"}]


def test_route_decision_denied_by_keymint_names_the_missing_scope(fake_keymint, clock):
    def answer(form):
        allowed = (form.get("method"), form.get("path")) == ("GET", "/v1/orders/1")
        return active(fake_keymint, allowed=allowed,
                      **({} if allowed else {"missing_scope": "orders:write"}))

    fake_keymint.introspect = answer
    check = verifier(fake_keymint, clock)
    assert check.check("at_token", "get", "/v1/orders/1").subject == "42"
    with pytest.raises(InsufficientScope) as refused:
        check.check("at_token", "POST", "/v1/orders")
    assert refused.value.scopes == ("orders:write",)
    assert {(f["method"], f["path"]) for f in fake_keymint.forms} == {
        ("GET", "/v1/orders/1"), ("POST", "/v1/orders")}
    # each route's answer is cached on its own
    check.check("at_token", "GET", "/v1/orders/1")
    assert len(fake_keymint.forms) == 2


def test_without_allowed_in_the_answer_scopes_decide(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint)
    check = verifier(fake_keymint, clock)
    assert check.check("at_token", "DELETE", "/v1/orders/1", ["orders:read"])
    with pytest.raises(InsufficientScope):
        check.check("at_token", "DELETE", "/v1/orders/1", ["orders:delete"])


def test_allowed_true_does_not_waive_the_services_own_scopes(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint, allowed=True)
    with pytest.raises(InsufficientScope):
        verifier(fake_keymint, clock).check("at_token", "GET", "/x", ["orders:admin"])


def test_route_policy_off_sends_no_method_or_path(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint, allowed=False)
    verifier(fake_keymint, clock, route_policy=False).check("at_token", "GET", "/x")
    assert "method" not in fake_keymint.forms[0]


def test_answer_for_another_audience_is_invalid(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint, aud=["https://reports.example"])
    with pytest.raises(InvalidToken, match="not meant"):
        verifier(fake_keymint, clock, audience="https://orders.example").verify("at_token")
    ok = verifier(fake_keymint, clock, audience="https://reports.example").verify("at_token")
    assert ok.audience == ("https://reports.example",)


def test_answer_from_another_issuer_is_invalid(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint, iss="https://evil.example")
    with pytest.raises(InvalidToken, match="another server"):
        verifier(fake_keymint, clock).verify("at_token")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_failing_introspection_fails_closed_after_one_attempt(fake_keymint, clock, caplog,
                                                              status):
    fake_keymint.introspection_status = status
    with caplog.at_level(logging.ERROR, logger="keymint_resource"), \
            pytest.raises(VerifierUnavailable):
        verifier(fake_keymint, clock).verify("at_token")
    assert len(fake_keymint.forms) == 1
    assert f"HTTP {status}" in caplog.text and "at_token" not in caplog.text


def test_unreadable_answer_fails_closed(fake_keymint, clock):
    fake_keymint.introspect = lambda form: {"active": "yes"}
    with pytest.raises(VerifierUnavailable, match="unreadable"):
        verifier(fake_keymint, clock).verify("at_token")


def test_failures_are_not_cached(fake_keymint, clock):
    fake_keymint.introspection_status = 503
    check = verifier(fake_keymint, clock)
    with pytest.raises(VerifierUnavailable):
        check.verify("at_token")
    fake_keymint.introspection_status = 200
    fake_keymint.introspect = lambda form: active(fake_keymint)
    assert check.verify("at_token").subject == "42"


def test_cache_is_bounded_least_recently_used_first(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint)
    check = verifier(fake_keymint, clock, cache_size=2)
    for token in ("at_a", "at_b", "at_a", "at_c"):  # at_b is the least recently used
        check.verify(token)
    assert check.introspections == 3
    check.verify("at_a")
    assert check.introspections == 3
    check.verify("at_b")
    assert check.introspections == 4


def test_cache_stores_no_raw_token(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint)
    check = verifier(fake_keymint, clock)
    check.verify("at_secret_token")
    assert check.cache is not None
    assert all("at_secret_token" not in repr(key) for key in check.cache._entries)


def test_max_stale_zero_disables_the_cache(fake_keymint, clock):
    fake_keymint.introspect = lambda form: active(fake_keymint)
    check = verifier(fake_keymint, clock, max_stale=0)
    check.verify("at_a")
    check.verify("at_a")
    assert check.cache is None and check.introspections == 2


def test_inactive_ttl_never_exceeds_max_stale():
    assert TokenVerifier("https://k.example", "c", "s", max_stale=1,
                         inactive_ttl=30).inactive_ttl == 1


def test_cache_entry_expiry_is_exclusive():
    cache = IntrospectionCache(4)
    cache.put("k", {"active": True}, expires_at=10.0, now=5.0)
    assert cache.get("k", 9.999) == {"active": True}
    assert cache.get("k", 10.0) is None
    cache.put("dead", {"active": True}, expires_at=5.0, now=5.0)
    assert len(cache) == 0


def test_unreachable_introspection_endpoint_fails_closed(fake_keymint, clock, monkeypatch,
                                                         caplog):
    from tests.support import free_port

    closed = f"http://127.0.0.1:{free_port()}/oauth/introspect"
    monkeypatch.setattr(FakeKeymint, "metadata", lambda self: {
        "issuer": self.url, "introspection_endpoint": closed})
    check = verifier(fake_keymint, clock, timeout=2)
    with caplog.at_level(logging.ERROR, logger="keymint_resource"), \
            pytest.raises(VerifierUnavailable, match="cannot be reached"):
        check.verify("at_token")
    assert check.introspections == 1
    assert "introspection failed: ConnectionError" in caplog.text


def test_one_verifier_shared_by_threads(fake_keymint, clock):
    from concurrent.futures import ThreadPoolExecutor

    fake_keymint.introspect = lambda form: active(fake_keymint, sub=form["token"])
    check = verifier(fake_keymint, clock, cache_size=5)
    tokens = [f"at_{n}" for n in range(8)] * 25
    with ThreadPoolExecutor(max_workers=8) as pool:
        subjects = list(pool.map(lambda token: check.verify(token).subject, tokens))
    assert subjects == tokens  # every thread got the answer about its own token
    assert check.cache is not None and len(check.cache) <= 5
