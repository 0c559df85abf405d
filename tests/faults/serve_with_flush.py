"""`keymint serve` with one extra shutdown flush registered, as a buffering feature would.

The flush writes the number of access tokens it can see into $KEYMINT_TEST_FLUSH_MARKER, so
a test can tell that it ran, with a database session, after the in-flight requests ended.
    python tests/faults/serve_with_flush.py HOST:PORT [WORKERS]
"""

from __future__ import annotations

import os
import sys

from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.runtime import lifecycle
from app.runtime.server import serve_wsgi


def _flush() -> None:
    from app.extensions import db
    from app.models import AccessToken

    count = db.session.scalar(select(func.count()).select_from(AccessToken))
    with open(os.environ["KEYMINT_TEST_FLUSH_MARKER"], "a") as marker:
        marker.write(f"flushed tokens={count} pid={os.getpid()}\n")


def create_flushing_app() -> Flask:
    app = create_app()
    lifecycle.register_flush(app, _flush)
    return app


if __name__ == "__main__":
    serve_wsgi(create_flushing_app, bind=sys.argv[1],
               workers=int(sys.argv[2]) if len(sys.argv) > 2 else 1)
