"""Bulk-insert live access tokens for one API key, for the N-live-tokens benchmark.

    .venv/bin/python bench/seed_tokens.py --database-url URL --client-id key_... \
        --count 1000000 [--ttl 86400] [--sample-out FILE --sample 1000]

Rows go straight into keymint's ``access_tokens`` table (the table definition comes
from app/models/tokens.py, digests and token shapes from app/credentials.py), in big
batches: PostgreSQL via COPY, SQLite via one SQLAlchemy Core executemany per batch.
No audit rows are written: this fills the table an introspection has to search, it
does not replay history. Every token is real (``at_`` + body + checksum, stored as the
SHA-256 digest keymint computes), live (not revoked, expires ``--ttl`` seconds from
now) and belongs to the given key, so any of them introspects as active for it.
``--sample-out`` writes the plaintext of ``--sample`` of them, one per line, chosen
evenly across the batches, for load tests that present seeded tokens (introspection
of tokens spread over the table, revocation of fresh tokens). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from sqlalchemy import create_engine, select, text  # noqa: E402

from app import credentials  # noqa: E402
from app.models.keys import ApiKey, KeySecret  # noqa: E402
from app.models.tokens import AccessToken  # noqa: E402

B62 = credentials.BASE62
# 240 random bits -> 40 base62 digits (62**40 > 2**238), the same body shape keymint makes.
_BODY_BYTES = 30


def _b62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        out.append(B62[rem])
    return "".join(out)


def make_token() -> str:
    """A token of exactly keymint's shape; faster than 40 x secrets.choice for 1M rows."""
    body = _b62(int.from_bytes(os.urandom(_BODY_BYTES), "big"), credentials.RANDOM_BODY)
    token = credentials.TOKEN_PREFIX + body + credentials.checksum(body)
    return token


def make_jti() -> str:
    return credentials.TOKEN_ID_PREFIX + _b62(
        int.from_bytes(os.urandom(18), "big"), credentials.CLIENT_ID_BODY
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("KEYMINT_DATABASE_URL"))
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--ttl", type=int, default=86400, help="seconds until the tokens expire")
    ap.add_argument("--sample-out", help="write plaintext of --sample seeded tokens here")
    ap.add_argument("--sample", type=int, default=1000)
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error("--database-url or KEYMINT_DATABASE_URL is required")

    # Checked once so a change of the token format in app/credentials.py fails loudly here.
    probe = make_token()
    assert credentials.is_access_token(probe), "seed token shape no longer matches keymint's"

    engine = create_engine(args.database_url)
    table = AccessToken.__table__
    started = time.monotonic()
    with engine.connect() as conn:
        key = conn.execute(
            select(ApiKey.id, ApiKey.user_id, ApiKey.workspace_id, ApiKey.scopes).where(
                ApiKey.client_id == args.client_id
            )
        ).one_or_none()
        if key is None:
            print(f"no API key {args.client_id}", file=sys.stderr)
            return 1
        secret_id = conn.execute(
            select(KeySecret.id)
            .where(
                KeySecret.key_id == key.id,
                KeySecret.revoked_at.is_(None),
                KeySecret.expires_at.is_(None),
            )
            .order_by(KeySecret.id.desc())
            .limit(1)
        ).scalar()
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(seconds=args.ttl)
    sample_every = max(1, args.count // args.sample) if args.sample_out else 0
    samples: list[str] = []
    pg = engine.dialect.name == "postgresql"

    done = 0
    while done < args.count:
        n = min(args.batch, args.count - done)
        tokens = [make_token() for _ in range(n)]
        if sample_every:
            samples.extend(tokens[i] for i in range(n) if (done + i) % sample_every == 0)
        rows = [
            {
                "digest": credentials.digest(t),
                "jti": make_jti(),
                "key_id": key.id,
                "secret_id": secret_id,
                "user_id": key.user_id,
                "workspace_id": key.workspace_id,
                "scopes": key.scopes,
                "issued_at": now,
                "expires_at": expires,
            }
            for t in tokens
        ]
        if pg:
            _copy_pg(engine, rows)
        else:
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
        done += n

    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    if args.sample_out:
        with open(args.sample_out, "w") as fh:
            fh.write("\n".join(samples[: args.sample]) + "\n")
    print(
        json.dumps(
            {
                "seeded": done,
                "client_id": args.client_id,
                "dialect": engine.dialect.name,
                "seconds": round(time.monotonic() - started, 1),
                "samples": len(samples[: args.sample]) if args.sample_out else 0,
            }
        )
    )
    return 0


COLUMNS = (
    "digest",
    "jti",
    "key_id",
    "secret_id",
    "user_id",
    "workspace_id",
    "scopes",
    "issued_at",
    "expires_at",
)


def _copy_pg(engine, rows: list[dict]) -> None:
    """COPY FROM STDIN through psycopg 3 (text format; none of the values need escaping)."""
    buf = io.StringIO()
    for r in rows:
        vals = []
        for c in COLUMNS:
            v = r[c]
            vals.append(
                "\\N" if v is None else v.isoformat() if isinstance(v, datetime) else str(v)
            )
        buf.write("\t".join(vals) + "\n")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY {AccessToken.__tablename__} ({', '.join(COLUMNS)}) FROM STDIN") as cp:
            cp.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()


if __name__ == "__main__":
    raise SystemExit(main())
