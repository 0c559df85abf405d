"""Timing of a failed client authentication: unknown client_id vs known id + wrong secret.

Not a test: prints the latency percentiles of both populations (in-process, Flask test
client, interleaved to share the same noise) so a reader can see that they overlap.

    .venv/bin/python bench/timing_auth.py [--requests 3000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PERCENTILES = (1, 10, 25, 50, 75, 90, 99)


def build_app(database_url: str | None):
    from flask_migrate import upgrade

    from app import create_app

    url = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='keymint-bench-')}/bench.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "KEYMINT_RATELIMIT_ENABLED": False,
                      "KEYMINT_LOG_LEVEL": "warning"})
    with app.app_context():
        upgrade()
    return app


def make_key(app):
    from app.extensions import db
    from app.services import accounts, keys
    from app.services.audit import Actor

    with app.app_context():
        email = f"bench-{time.time_ns()}@example.com"
        user = accounts.create_user(db.session, email, Actor.cli())
        workspace = accounts.create_workspace(db.session, f"bench{time.time_ns()}", user,
                                              Actor.cli())
        created = keys.create_key(db.session, workspace, user, Actor.cli(), name="bench",
                                  scopes="introspect")
        db.session.commit()
        return created.key.client_id


def percentiles(samples: list[float]) -> list[float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return [cuts[p - 1] for p in PERCENTILES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--database-url", default=os.environ.get("KEYMINT_DATABASE_URL"))
    args = parser.parse_args()

    from app import credentials

    app = build_app(args.database_url)
    client = app.test_client()
    known = make_key(app)
    wrong_secret = credentials.new_secret()
    data = {"grant_type": "client_credentials"}
    timings: dict[str, list[float]] = {"unknown client_id": [], "wrong secret": []}
    for n in range(args.requests * 2 + 200):
        label = "unknown client_id" if n % 2 else "wrong secret"
        client_id = credentials.new_client_id() if n % 2 else known
        start = time.perf_counter()
        response = client.post("/oauth/token", data=data, auth=(client_id, wrong_secret))
        elapsed = time.perf_counter() - start
        assert response.status_code == 401
        if n >= 200:  # warm-up discarded
            timings[label].append(elapsed * 1e6)

    print(f"{args.requests} requests each, µs  " + "  ".join(f"p{p:<5}" for p in PERCENTILES))
    rows = {label: percentiles(samples) for label, samples in timings.items()}
    for label, row in rows.items():
        print(f"{label:<20}" + "  ".join(f"{v:6.0f}" for v in row))
    a, b = rows["unknown client_id"], rows["wrong secret"]
    lower, upper = max(a[1], b[1]), min(a[-2], b[-2])
    print(f"p10-p90 ranges overlap: {'yes' if lower <= upper else 'NO'} "
          f"({lower:.0f}-{upper:.0f} µs); median difference "
          f"{abs(a[3] - b[3]):.0f} µs ({abs(a[3] - b[3]) / max(a[3], b[3]) * 100:.1f}%)")


if __name__ == "__main__":
    main()
