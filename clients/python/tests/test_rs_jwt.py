"""JWT access tokens (RFC 9068) validated locally against a JWKS served over real HTTP."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from conftest import NOW, Clock, FakeKeymint, make_key
from keymint_resource import InvalidToken, TokenVerifier, VerifierUnavailable

JWKS = "/.well-known/jwks.json"
METADATA = "/.well-known/oauth-authorization-server"


def verifier(fake: FakeKeymint, clock: Clock, **options) -> TokenVerifier:
    return TokenVerifier(fake.url, "key_rs", "sk_rs", clock=clock, **options)


@pytest.fixture
def es_key(fake_keymint: FakeKeymint):
    key = make_key("EC", "k1")
    fake_keymint.keys.append(key)
    return key


def test_valid_es256_token_maps_to_the_decision_object(fake_keymint, clock, es_key):
    token = fake_keymint.sign(es_key, aud=["https://orders.example", fake_keymint.url])
    access = verifier(fake_keymint, clock).verify(token)
    assert access.format == "jwt"
    assert access.subject == "42"
    assert access.client_id == "key_client"
    assert access.workspace_id == "7"
    assert access.scopes == frozenset({"orders:read"})
    assert access.audience == ("https://orders.example", fake_keymint.url)
    assert access.token_id == "tok_abc"
    assert access.expires_at == NOW + 300
    assert fake_keymint.hits == {METADATA: 1, JWKS: 1}
    assert fake_keymint.forms == []  # no introspection for a JWT


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_eddsa_token_is_accepted(fake_keymint, clock):
    key = make_key("OKP", "ed1")
    fake_keymint.keys.append(key)
    assert verifier(fake_keymint, clock).verify(fake_keymint.sign(key)).subject == "42"


def test_expiry_is_checked_with_the_leeway_at_the_exact_boundary(fake_keymint, clock, es_key):
    check = verifier(fake_keymint, clock, leeway=5)
    token = fake_keymint.sign(es_key, exp=NOW + 300)
    # RFC 7519 §4.1.4: valid strictly before exp, here stretched by the leeway.
    clock.now = NOW + 304
    assert check.verify(token).subject == "42"
    clock.now = NOW + 305
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(token)


def test_not_before_is_checked_with_the_leeway_at_the_exact_boundary(fake_keymint, clock,
                                                                       es_key):
    check = verifier(fake_keymint, clock, leeway=5)
    token = fake_keymint.sign(es_key, nbf=NOW + 10)
    clock.now = NOW + 4
    with pytest.raises(InvalidToken, match="not valid yet"):
        check.verify(token)
    clock.now = NOW + 5
    assert check.verify(token).subject == "42"


def test_issued_in_the_future_is_rejected(fake_keymint, clock, es_key):
    with pytest.raises(InvalidToken, match="future"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(es_key, iat=NOW + 60))


def test_wrong_issuer_is_rejected(fake_keymint, clock, es_key):
    with pytest.raises(InvalidToken, match="another server"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(es_key, iss="https://evil"))


def test_audience_must_include_this_resource(fake_keymint, clock, es_key):
    check = verifier(fake_keymint, clock, audience="https://orders.example")
    with pytest.raises(InvalidToken, match="not meant for this resource"):
        check.verify(fake_keymint.sign(es_key, aud="https://reports.example"))
    # no audience configured: not checked (the docs say to set it)
    assert verifier(fake_keymint, clock).verify(
        fake_keymint.sign(es_key, aud="https://orders.example")).audience == (
        "https://orders.example",)
    ok = check.verify(fake_keymint.sign(es_key, aud=["https://orders.example"]))
    assert ok.audience == ("https://orders.example",)


@pytest.mark.parametrize("typ", ["JWT", "at+JWT+x", None])
def test_wrong_or_missing_typ_is_rejected(fake_keymint, clock, es_key, typ):
    token = fake_keymint.sign(es_key, header={"typ": typ})
    with pytest.raises(InvalidToken, match="typ"):
        verifier(fake_keymint, clock).verify(token)


def test_media_type_form_of_typ_is_accepted(fake_keymint, clock, es_key):
    token = fake_keymint.sign(es_key, header={"typ": "application/AT+JWT"})
    assert verifier(fake_keymint, clock).verify(token).subject == "42"


def test_algorithm_outside_the_allow_list_is_rejected(fake_keymint, clock, es_key):
    token = fake_keymint.sign(es_key)
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier(fake_keymint, clock, algorithms=("EdDSA",)).verify(token)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_rejected(fake_keymint, clock, es_key):
    token = (_b64({"alg": "none", "typ": "at+jwt", "kid": "k1"}) + "."
             + _b64(fake_keymint.claims()) + ".")
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier(fake_keymint, clock).verify(token)
    with pytest.raises(ValueError, match="none"):
        verifier(fake_keymint, clock, algorithms=("ES256", "none"))


def test_tampered_payload_fails_the_signature(fake_keymint, clock, es_key):
    header, _, signature = fake_keymint.sign(es_key).split(".")
    forged = f"{header}.{_b64(fake_keymint.claims(scope='orders:write admin'))}.{signature}"
    with pytest.raises(InvalidToken, match="signature"):
        verifier(fake_keymint, clock).verify(forged)


def test_signed_by_an_unpublished_key_is_rejected(fake_keymint, clock, es_key):
    impostor = make_key("EC", "k1")  # same kid, other key
    with pytest.raises(InvalidToken, match="signature"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(impostor))


def test_missing_required_claim_is_rejected(fake_keymint, clock, es_key):
    with pytest.raises(InvalidToken, match="client_id"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(es_key, client_id=None))


@pytest.mark.parametrize("token", ["a.b.c", "x" * 5000, "", "eyJ.eyJ.%%%"])
def test_malformed_tokens_are_invalid_not_errors(fake_keymint, clock, es_key, token):
    with pytest.raises(InvalidToken):
        verifier(fake_keymint, clock).verify(token)


def test_unknown_kid_refreshes_the_jwks_once_then_rate_limits(fake_keymint, clock, es_key):
    check = verifier(fake_keymint, clock, jwks_refresh_interval=30)
    assert check.verify(fake_keymint.sign(es_key)).subject == "42"
    assert fake_keymint.hits[JWKS] == 1

    # A rotation published a new key: the first token signed by it triggers one refresh ...
    clock.advance(30)
    new = make_key("EC", "k2")
    fake_keymint.keys.append(new)
    assert check.verify(fake_keymint.sign(new, iat=int(clock.now), exp=int(clock.now) + 300))
    assert fake_keymint.hits[JWKS] == 2

    # ... and a kid nobody published cannot make it refresh again within the interval.
    ghost = make_key("EC", "k3")
    ghost_token = fake_keymint.sign(ghost, iat=int(clock.now), exp=int(clock.now) + 300)
    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown key"):
            check.verify(ghost_token)
    fake_keymint.keys.append(ghost)  # even once it exists, the interval holds ...
    clock.advance(29)
    with pytest.raises(InvalidToken, match="unknown key"):
        check.verify(ghost_token)
    assert fake_keymint.hits[JWKS] == 2
    clock.advance(1)  # ... up to its exact end
    assert check.verify(ghost_token).subject == "42"
    assert fake_keymint.hits[JWKS] == 3


def test_jwks_is_refetched_after_its_max_age(fake_keymint, clock, es_key):
    fake_keymint.jwks_cache_control = "public, max-age=120"
    check = verifier(fake_keymint, clock)
    token = fake_keymint.sign(es_key, exp=NOW + 3600)
    check.verify(token)
    clock.advance(119)
    check.verify(token)
    assert fake_keymint.hits[JWKS] == 1
    clock.advance(1)
    check.verify(token)
    assert fake_keymint.hits[JWKS] == 2


def test_jwks_down_keeps_cached_keys_until_they_expire_then_fails_closed(
        fake_keymint, clock, es_key, caplog):
    fake_keymint.jwks_cache_control = "max-age=60"
    check = verifier(fake_keymint, clock, jwks_stale_ttl=600, jwks_refresh_interval=30)
    token = fake_keymint.sign(es_key, exp=NOW + 3600)
    check.verify(token)
    fake_keymint.jwks_status = 503
    clock.advance(60)  # stale: a refresh is tried, fails, and the cached keys still serve
    with caplog.at_level(logging.ERROR, logger="keymint_resource"):
        assert check.verify(token).subject == "42"
    assert "JWKS refresh failed" in caplog.text and "cached keys: kept" in caplog.text
    assert fake_keymint.hits[JWKS] == 2
    clock.now = NOW + 599
    assert check.verify(token).subject == "42"
    clock.now = NOW + 600
    with pytest.raises(VerifierUnavailable):
        check.verify(token)


def test_jwks_down_on_first_use_fails_closed(fake_keymint, clock, es_key, caplog):
    fake_keymint.jwks_status = 500
    with caplog.at_level(logging.ERROR, logger="keymint_resource"), \
            pytest.raises(VerifierUnavailable):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(es_key))
    assert "cached keys: none" in caplog.text


def test_private_and_symmetric_keys_in_the_jwks_are_never_trusted(fake_keymint, clock):
    key = make_key("EC", "k1")
    published = key.as_dict(private=True)  # a misconfigured server leaking "d"
    fake_keymint.keys.append(type("Leaky", (), {"as_dict": lambda self, private: published})())
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(key))


def test_metadata_naming_another_issuer_is_refused(fake_keymint, clock, es_key, monkeypatch):
    monkeypatch.setattr(type(fake_keymint), "metadata", lambda self: {
        "issuer": "https://elsewhere.example", "jwks_uri": f"{self.url}{JWKS}",
        "introspection_endpoint": f"{self.url}/oauth/introspect"})
    with pytest.raises(VerifierUnavailable, match="metadata"):
        verifier(fake_keymint, clock).verify(fake_keymint.sign(es_key))
    assert JWKS not in fake_keymint.hits


def test_metadata_unreachable_fails_closed(clock):
    from tests.support import free_port

    check = TokenVerifier(f"http://127.0.0.1:{free_port()}", "key_rs", "sk_rs", clock=clock,
                          timeout=2)
    with pytest.raises(VerifierUnavailable, match="cannot be reached"):
        check.verify("at_whatever")


def test_discovery_is_retried_once_per_interval_not_per_request(fake_keymint, clock, es_key,
                                                                 monkeypatch):
    real = FakeKeymint.metadata
    monkeypatch.setattr(FakeKeymint, "metadata", lambda self: {"issuer": "wrong"})
    check = verifier(fake_keymint, clock, discovery_retry_interval=10)
    token = fake_keymint.sign(es_key)
    for _ in range(3):
        with pytest.raises(VerifierUnavailable):
            check.verify(token)
    assert fake_keymint.hits[METADATA] == 1
    monkeypatch.setattr(FakeKeymint, "metadata", real)
    clock.advance(9.999)
    with pytest.raises(VerifierUnavailable):
        check.verify(token)
    clock.advance(0.001)
    assert check.verify(token).subject == "42"
    assert fake_keymint.hits[METADATA] == 2


def test_without_jwks_uri_a_jwt_is_introspected(fake_keymint, clock, es_key, monkeypatch):
    check = verifier(fake_keymint, clock)
    monkeypatch.setattr(type(fake_keymint), "metadata", lambda self: {
        "issuer": self.url, "introspection_endpoint": f"{self.url}/oauth/introspect"})
    with pytest.raises(InvalidToken, match="not active"):
        check.verify(fake_keymint.sign(es_key))
    assert len(fake_keymint.forms) == 1 and JWKS not in fake_keymint.hits


def test_verify_jwt_locally_off_introspects_jwts(fake_keymint, clock, es_key):
    token = fake_keymint.sign(es_key)
    fake_keymint.introspect = lambda form: {"active": True, "iss": fake_keymint.url,
                                            "sub": "42", "scope": "orders:read",
                                            "exp": NOW + 300}
    access = verifier(fake_keymint, clock, verify_jwt_locally=False).verify(token)
    assert access.format == "opaque" and fake_keymint.forms[0]["token"] == token


# --- the cache of verified JWTs (jwt_cache) ---------------------------------------------------


def test_a_verified_jwt_is_not_verified_again_until_it_expires(fake_keymint, clock, es_key):
    fake_keymint.jwks_cache_control = "public, max-age=3600"  # no JWKS refresh in between
    check = verifier(fake_keymint, clock, leeway=5)
    token = fake_keymint.sign(es_key, exp=NOW + 300)
    first = check.verify(token)
    clock.now = NOW + 304  # the last second the leeway allows
    assert check.verify(token) == first
    assert check.signature_checks == 1
    clock.now = NOW + 305  # the cached decision ends where the claims check would refuse
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(token)
    assert check.signature_checks == 2


def test_a_cached_jwt_still_needs_its_scopes(fake_keymint, clock, es_key):
    from keymint_resource import InsufficientScope

    check = verifier(fake_keymint, clock)
    token = fake_keymint.sign(es_key, scope="orders:read")
    assert check.check(token, "GET", "/orders", ["orders:read"]).subject == "42"
    with pytest.raises(InsufficientScope):
        check.check(token, "POST", "/orders", ["orders:write"])
    assert check.signature_checks == 1


def test_a_key_withdrawn_from_the_jwks_stops_its_cached_tokens(fake_keymint, clock, es_key):
    fake_keymint.jwks_cache_control = "public, max-age=120"
    check = verifier(fake_keymint, clock)
    token = fake_keymint.sign(es_key, exp=NOW + 3600)
    check.verify(token)
    fake_keymint.keys[:] = [make_key("EC", "k2")]  # k1 retired (or compromised) at keymint
    clock.advance(119)  # the cached key set is still fresh: nothing has told us yet
    assert check.verify(token).subject == "42"
    clock.advance(1)  # refreshed: k1 is gone, and so is every decision it made
    with pytest.raises(InvalidToken, match="unknown key"):
        check.verify(token)
    assert fake_keymint.hits[JWKS] == 2


def test_a_refreshed_key_set_verifies_each_token_once_more(fake_keymint, clock, es_key):
    fake_keymint.jwks_cache_control = "public, max-age=120"
    check = verifier(fake_keymint, clock)
    token = fake_keymint.sign(es_key, exp=NOW + 3600)
    check.verify(token)
    clock.advance(120)  # the same key, published again: decisions are re-checked against it
    check.verify(token)
    check.verify(token)
    assert fake_keymint.hits[JWKS] == 2
    assert check.signature_checks == 2


def test_a_token_used_before_its_nbf_is_not_answered_from_the_cache(fake_keymint, clock,
                                                                     es_key):
    check = verifier(fake_keymint, clock, leeway=5)
    token = fake_keymint.sign(es_key, nbf=NOW + 10)
    clock.now = NOW + 5
    check.verify(token)
    clock.now = NOW + 4  # the clock stepped back: the cached decision does not apply then
    with pytest.raises(InvalidToken, match="not valid yet"):
        check.verify(token)


def test_jwt_cache_off_checks_every_signature(fake_keymint, clock, es_key):
    check = verifier(fake_keymint, clock, jwt_cache=False)
    token = fake_keymint.sign(es_key)
    for _ in range(3):
        assert check.verify(token).subject == "42"
    assert check.signature_checks == 3 and check.jwt_cache is None
