"""The client's User-Agent in the audit trail (and legacy usage): capped, credentials redacted."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time

from app import credentials
from tests.support import (
    GRANT,
    SUNSET,
    add_legacy_key,
    all_rows,
    audit_events,
    flush,
    legacy_row,
    me,
)

CAP = 256


def _issue_with_agent(client, key, agent: str) -> str:
    response = client.post("/oauth/token", data=GRANT, auth=key.auth,
                           headers={"User-Agent": agent})
    assert response.status_code == 200, response.get_json()
    [event] = [e for e in audit_events(client.application, "token.issued")
               if e.target_id == _jti(client, key, response.get_json()["access_token"])]
    return event.user_agent


def _jti(client, key, token: str) -> str:
    answer = client.post("/oauth/introspect", data={"token": token}, auth=key.auth).get_json()
    return answer["jti"]


def test_a_secret_or_token_in_the_user_agent_is_redacted(app, client, factory):
    key = factory.key(scopes="introspect")
    token = client.post("/oauth/token", data=GRANT, auth=key.auth).get_json()["access_token"]
    agent = f"sdk/1.0 (debug secret={key.secret}; last_token_{token}) {key.secret[:20]}"
    stored = _issue_with_agent(client, key, agent)
    assert stored == "sdk/1.0 (debug secret=[REDACTED]; last_token_[REDACTED]) [REDACTED]"
    everything = repr(all_rows(app, "audit_events"))
    for leaked in (key.secret, token, key.secret[3:20], token[3:]):
        assert leaked not in everything
    # What is not shaped like one stays as it was.
    plain = "Mozilla/5.0 (X11; Linux x86_64) format_sk_ ask_at_me task_12345678 curl/8.5"
    assert _issue_with_agent(client, key, plain) == plain


def test_a_long_user_agent_is_capped_after_redaction(app, client, factory):
    key = factory.key(scopes="introspect")
    assert len(_issue_with_agent(client, key, "a" * CAP)) == CAP  # exactly the cap: kept
    stored = _issue_with_agent(client, key, "x" * 5000)
    assert stored == "x" * (CAP - 1) + "…"
    # A secret across the cap is redacted before the cut, not cut into a shorter leak.
    straddling = "y" * (CAP - 12) + " " + credentials.new_secret()
    assert len(straddling) > CAP
    assert _issue_with_agent(client, key, straddling) == "y" * (CAP - 12) + " [REDACTED]"


def test_legacy_usage_keeps_the_same_cleaned_user_agent(app, client, factory):
    legacy = "legacy-agent-test-key-7"
    legacy_id = add_legacy_key(app, factory.workspace(), legacy)
    secret = credentials.new_secret()
    with freeze_time(SUNSET - timedelta(days=3)):
        response = me(client, legacy, headers={"User-Agent": f"old/1 {secret} " + "z" * 600})
        assert response.status_code == 200
        flush(app)
    stored = legacy_row(app, legacy_id)["last_user_agent"]
    assert stored.startswith("old/1 [REDACTED] zzz") and len(stored) == CAP
    assert secret not in repr(all_rows(app, "audit_events"))
