"""`keymint serve` with one extra shutdown flush registered, as a buffering feature would.

The flush writes the number of access tokens it can see into $KEYMINT_TEST_FLUSH_MARKER, so
a test can tell that it ran, with a database session, after the in-flight requests ended.
    python tests/faults/serve_with_flush.py HOST:PORT
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import func, select

from app import lifecycle
from app.serving import SERVER_SETTINGS, KeymintServer


def _flush() -> None:
    from app.extensions import db
    from app.models import AccessToken

    count = db.session.scalar(select(func.count()).select_from(AccessToken))
    with open(os.environ["KEYMINT_TEST_FLUSH_MARKER"], "a") as marker:
        marker.write(f"flushed tokens={count} pid={os.getpid()}\n")


class FlushingServer(KeymintServer):
    def load(self):
        app = super().load()
        lifecycle.register_flush(app, _flush)
        return app


if __name__ == "__main__":
    FlushingServer({**SERVER_SETTINGS, "bind": sys.argv[1], "workers": 1}).run()
