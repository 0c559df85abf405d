"""An unknown client_id and a wrong secret are indistinguishable in the response."""

from __future__ import annotations

import pytest
import requests

from app import credentials

OAUTH_PATHS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/rotate"]
VARYING = {"x-request-id", "date"}


def comparable(status: int, headers, body: bytes) -> tuple:
    return status, sorted((k, v) for k, v in headers if k.lower() not in VARYING), body


def _post(client, path: str, client_id: str, secret: str, method: str):
    data = {"grant_type": "client_credentials", "token": "at_unknown"}
    if method == "basic":
        return client.post(path, data=data, auth=(client_id, secret))
    return client.post(path, data={**data, "client_id": client_id, "client_secret": secret})


@pytest.mark.parametrize("path", OAUTH_PATHS)
@pytest.mark.parametrize("method", ["basic", "post"])
def test_unknown_client_and_wrong_secret_are_byte_identical(client, factory, path, method):
    key = factory.key()
    wrong_secret = credentials.new_secret()  # well-formed: it reaches the digest comparison
    unknown = _post(client, path, credentials.new_client_id(), wrong_secret, method)
    wrong = _post(client, path, key.client_id, wrong_secret, method)
    malformed = _post(client, path, key.client_id, "sk_short", method)
    assert unknown.status_code == 401
    expected = comparable(unknown.status_code, unknown.headers, unknown.data)
    assert comparable(wrong.status_code, wrong.headers, wrong.data) == expected
    assert comparable(malformed.status_code, malformed.headers, malformed.data) == expected


def test_revoked_and_expired_keys_answer_like_unknown_ones(client, factory, app):
    from app.extensions import db
    from app.services import keys
    from app.services.audit import Actor

    revoked = factory.key()
    with app.app_context():
        keys.revoke_key(db.session, keys.get_key(db.session, revoked.client_id), Actor.cli())
        db.session.commit()
    unknown = _post(client, "/oauth/token", credentials.new_client_id(), revoked.secret, "basic")
    answer = _post(client, "/oauth/token", revoked.client_id, revoked.secret, "basic")
    assert comparable(answer.status_code, answer.headers, answer.data) == comparable(
        unknown.status_code, unknown.headers, unknown.data)


@pytest.mark.slow
def test_real_server_answers_are_byte_identical(live_server, factory):
    key = factory.key()
    secret = credentials.new_secret()
    answers = []
    for client_id in (credentials.new_client_id(), key.client_id):
        response = requests.post(live_server.url + "/oauth/token", auth=(client_id, secret),
                                 data={"grant_type": "client_credentials"}, timeout=10)
        answers.append(comparable(response.status_code, response.headers.items(),
                                  response.content))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
