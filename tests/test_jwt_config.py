"""KEYMINT_SIGNING_KEY_ENCRYPTION_KEY and KEYMINT_JWT_ACCESS_TOKEN_TTL: checked, masked."""

from __future__ import annotations

import base64

import pytest

from app.config import ConfigError, Secret, build_config
from tests.support import SIGNING_KEK


def _config(monkeypatch, tmp_path, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_config(None, str(tmp_path))


def test_the_key_is_32_bytes_of_urlsafe_base64_and_masked(monkeypatch, tmp_path):
    config = _config(monkeypatch, tmp_path, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=SIGNING_KEK)
    secret = config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"]
    assert isinstance(secret, Secret) and len(secret.reveal()) == 32
    assert SIGNING_KEK not in repr(config) and SIGNING_KEK not in str(secret)


def test_unset_means_no_jwts_and_the_default_ttl_is_300(monkeypatch, tmp_path):
    monkeypatch.delenv("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("KEYMINT_JWT_ACCESS_TOKEN_TTL", raising=False)
    config = build_config(None, str(tmp_path))
    assert config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] is None
    assert config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] == 300


@pytest.mark.parametrize(("value", "says"), [
    (base64.urlsafe_b64encode(b"s" * 16).decode(), "decodes to 16 bytes"),
    (base64.urlsafe_b64encode(b"s" * 48).decode(), "decodes to 48 bytes"),
    ("not base64 at all!" * 3, "is not URL-safe base64"),
    ("a" * 43 + "/", "is not URL-safe base64"),
])
def test_a_wrong_key_fails_at_start_up_without_repeating_it(monkeypatch, tmp_path, value, says):
    with pytest.raises(ConfigError) as error:
        _config(monkeypatch, tmp_path, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=value)
    message = str(error.value)
    assert "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY must be 32 random bytes" in message
    assert says in message and value not in message


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_the_jwt_ttl_is_a_positive_integer(monkeypatch, tmp_path, value):
    with pytest.raises(ConfigError, match="KEYMINT_JWT_ACCESS_TOKEN_TTL"):
        _config(monkeypatch, tmp_path, KEYMINT_JWT_ACCESS_TOKEN_TTL=value)
