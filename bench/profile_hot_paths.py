"""In-process CPU profile of keymint's hot paths (Flask test client, no network, no server).

Measures the Python-side cost of one request on each hot path, so a change to keymint's own
code can be compared without the noise of a load generator:

    .venv/bin/python bench/profile_hot_paths.py                      # SQLite, all paths
    .venv/bin/python bench/profile_hot_paths.py --paths token,me -n 3000 -r 7
    .venv/bin/python bench/profile_hot_paths.py --profile introspect  # + cProfile top 40
    KEYMINT_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/keymint_prof \\
        .venv/bin/python bench/profile_hot_paths.py                  # PostgreSQL (recreated)

Paths: floor (GET /healthz), introspect (a valid token), garbage (introspection of a string
that is no token), token (client_credentials, client_secret_basic), revoke (a fresh token
each time), me (GET /api/v1/me with a Bearer token).

Rate limiting stays on (as in production, in-memory storage) with limits high enough never to
trip; --no-ratelimit measures without it. Request log lines are formatted as in production
and written to /dev/null. Rounds interleave the paths; the figures quoted are medians over the
rounds of this process's CPU time per request (what a shared, noisy machine disturbs least)
and of wall time (which adds fsync and database waits, and other processes' load).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PATHS = ("floor", "introspect", "garbage", "token", "revoke", "me")
GARBAGE = "this-is-not-a-token-0123456789abcdefghijklmnopqrstuvwxyz"
HIGH_LIMIT = "100000000 per minute"


def _prepare_database(url: str | None) -> str:
    if url is None:
        path = os.path.join(tempfile.mkdtemp(prefix="keymint-prof-"), "prof.sqlite3")
        return "sqlite:///" + path
    if url.startswith("postgresql"):
        import psycopg
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        name = parsed.database
        admin = parsed.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False),
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    return url


def build(url: str, ratelimit: bool):
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    os.environ["KEYMINT_DATABASE_URL"] = url
    os.environ["KEYMINT_RATELIMIT_ENABLED"] = "true" if ratelimit else "false"
    for name in ("IP", "CLIENT", "INTROSPECT", "FAILED_CLIENT", "FAILED_IP", "LEGACY_KEY"):
        os.environ[f"KEYMINT_RATELIMIT_{name}"] = HIGH_LIMIT
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import accounts, keys
    from app.services.audit import Actor

    app = create_app()
    with app.app_context():
        upgrade()
        user = accounts.create_user(db.session, "prof@example.com", Actor.cli())
        workspace = accounts.create_workspace(db.session, "prof", user, Actor.cli())
        created = keys.create_key(db.session, workspace, user, Actor.cli(), name="prof",
                                  scopes="introspect keys:read")
        client_id, secret = created.key.client_id, created.client_secret
        db.session.commit()
    return app, (client_id, secret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("-n", type=int, default=2000, help="requests per round and path")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--no-ratelimit", action="store_true")
    parser.add_argument("--profile", metavar="PATH", help="cProfile this path afterwards")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime|cumulative)")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    for p in paths + ([args.profile] if args.profile else []):
        if p not in PATHS:
            parser.error(f"unknown path {p!r}; choose from {', '.join(PATHS)}")

    url = _prepare_database(os.environ.get("KEYMINT_DATABASE_URL"))
    # Log lines are formatted as in production; only their destination is /dev/null.
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved_stderr = os.dup(2)
    os.dup2(devnull, 2)
    try:
        app, auth = build(url, not args.no_ratelimit)
        client = app.test_client()

        def new_token() -> str:
            r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=auth)
            assert r.status_code == 200, r.get_data(as_text=True)
            return r.json["access_token"]

        token = new_token()
        bearer = {"Authorization": "Bearer " + token}
        spare: list[str] = []

        def call(path: str) -> None:
            if path == "floor":
                r = client.get("/healthz")
            elif path == "introspect":
                r = client.post("/oauth/introspect", data={"token": token}, auth=auth)
                assert r.json["active"] is True
            elif path == "garbage":
                r = client.post("/oauth/introspect", data={"token": GARBAGE}, auth=auth)
                assert r.json == {"active": False}
            elif path == "token":
                r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                auth=auth)
            elif path == "revoke":
                r = client.post("/oauth/revoke", data={"token": spare.pop()}, auth=auth)
            else:
                r = client.get("/api/v1/me", headers=bearer)
            assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True))

        def run(path: str, n: int) -> tuple[float, float]:
            if path == "revoke":  # fresh tokens, minted outside the timed loop
                spare[:] = [new_token() for _ in range(n)]
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                call(path)
            return ((time.process_time() - cpu) / n * 1e6,
                    (time.perf_counter() - wall) / n * 1e6)

        for path in paths:  # warm up every path (imports, caches, the pool)
            run(path, min(200, args.n))
        samples: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
        for round_no in range(args.rounds):
            order = paths if round_no % 2 == 0 else list(reversed(paths))
            for path in order:
                samples[path].append(run(path, args.n))
        profile = None
        if args.profile:
            if args.profile == "revoke":
                spare[:] = [new_token() for _ in range(args.n)]
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.n):
                call(args.profile)
            profile.disable()
    finally:
        os.dup2(saved_stderr, 2)
        os.close(devnull)

    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(f"backend={backend} ratelimit={'off' if args.no_ratelimit else 'on'} "
          f"n={args.n} rounds={args.rounds}")
    print(f"{'path':<12}{'CPU µs/req':>11}{'min':>7}{'max':>7}{'wall µs/req':>13}")
    for path in paths:
        cpu = [c for c, _ in samples[path]]
        wall = [w for _, w in samples[path]]
        print(f"{path:<12}{statistics.median(cpu):>11.0f}{min(cpu):>7.0f}{max(cpu):>7.0f}"
              f"{statistics.median(wall):>13.0f}")
    if profile is not None:
        print(f"\ncProfile of {args.profile}, {args.n} requests, by {args.sort}:")
        pstats.Stats(profile, stream=sys.stdout).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
