"""Credential formats: prefixes, checksums, digests and rejection without a database."""

import hashlib
import re
import string

from hypothesis import given
from hypothesis import strategies as st

from app import credentials

BASE62 = re.compile(r"^[0-9A-Za-z]+$")


def test_formats_match_the_contract():
    cid, secret, token = (credentials.new_client_id(), credentials.new_secret(),
                          credentials.new_access_token())
    assert cid.startswith("key_") and len(cid) == 4 + 24 and BASE62.match(cid[4:])
    assert secret.startswith("sk_") and len(secret) == 3 + 40 + 6 and BASE62.match(secret[3:])
    assert token.startswith("at_") and len(token) == 3 + 40 + 6 and BASE62.match(token[3:])
    assert credentials.is_client_id(cid)
    assert credentials.is_secret(secret) and not credentials.is_access_token(secret)
    assert credentials.is_access_token(token) and not credentials.is_secret(token)


def test_checksum_is_base62_crc32_of_the_random_part():
    import zlib

    secret = credentials.new_secret()
    body, check = secret[3:43], secret[43:]
    number = 0
    for ch in check:
        number = number * 62 + credentials.BASE62.index(ch)
    assert number == zlib.crc32(body.encode())


def test_values_are_random_not_sequential():
    ids = {credentials.new_client_id() for _ in range(200)}
    secrets_ = {credentials.new_secret() for _ in range(200)}
    assert len(ids) == 200 and len(secrets_) == 200


def test_digest_is_sha256_hex():
    secret = credentials.new_secret()
    assert credentials.digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert credentials.digests_match(credentials.digest(secret), secret)
    other_last = "y" if secret.endswith("x") else "x"  # a secret can end in "x" itself
    assert not credentials.digests_match(credentials.digest(secret), secret[:-1] + other_last)


@given(st.integers(min_value=0, max_value=45), st.sampled_from(string.printable))
def test_any_single_character_change_of_a_secret_is_rejected(position, replacement):
    secret = credentials.new_secret()
    changed = secret[:position + 3] + replacement + secret[position + 4:]
    if changed != secret:
        assert not credentials.is_secret(changed)


@given(st.integers(min_value=0, max_value=45), st.sampled_from(string.ascii_letters + "0123456789"))
def test_any_single_character_change_of_a_token_is_rejected(position, replacement):
    token = credentials.new_access_token()
    changed = token[:position + 3] + replacement + token[position + 4:]
    if changed != token:
        assert not credentials.is_access_token(changed)


@given(st.text(max_size=200))
def test_parsers_never_raise_on_arbitrary_text(text):
    assert credentials.is_secret(text) in (True, False)
    assert credentials.is_access_token(text) in (True, False)
    assert credentials.is_client_id(text) in (True, False)
    assert len(credentials.digest(text)) == 64


@given(st.builds(lambda: credentials.new_access_token()))
def test_generated_tokens_round_trip(token):
    assert credentials.is_access_token(token)
    assert credentials.hint(token) == token[:8]


def test_truncated_and_extended_values_are_rejected():
    token = credentials.new_access_token()
    assert not credentials.is_access_token(token[:-1])
    assert not credentials.is_access_token(token + "0")
    assert not credentials.is_access_token("")
    assert not credentials.is_access_token(None)


def test_console_link_tokens_and_session_ids_are_checked_and_redacted():
    link, session_id = credentials.new_login_link_token(), credentials.new_console_session_id()
    assert link.startswith("sil_") and session_id.startswith("cs_")
    assert credentials.is_login_link_token(link)
    assert not credentials.is_login_link_token(link[:-1] + ("0" if link[-1] != "0" else "1"))
    assert not credentials.is_login_link_token(session_id)
    line = f"GET /console/sign-in/link/{link} 200 cookie={session_id}"
    assert credentials.redact_credentials(line) == (
        "GET /console/sign-in/link/[REDACTED] 200 cookie=[REDACTED]")
