"""Run one change through the services, commit, print the result, then SIGKILL this process.

Used by the crash tests: nothing after the commit (no close, no checkpoint, no atexit) runs,
so what survives is exactly what the commit made durable.
    python tests/faults/crash_after_commit.py revoke-key CLIENT_ID
    python tests/faults/crash_after_commit.py rotate-secret CLIENT_ID GRACE_SECONDS
"""

from __future__ import annotations

import json
import os
import signal
import sys

from app import create_app
from app.extensions import db
from app.services import keys
from app.services.audit import Actor


def main(action: str, client_id: str, *rest: str) -> None:
    app = create_app()
    with app.app_context():
        key = keys.get_key(db.session, client_id)
        if action == "revoke-key":
            keys.revoke_key(db.session, key, Actor.cli())
            result = {"revoked": client_id}
        elif action == "rotate-secret":
            rotated = keys.rotate_secret(db.session, key, Actor.cli(), int(rest[0]))
            result = {"client_secret": rotated.client_secret}
        else:
            raise SystemExit(f"unknown action {action}")
        db.session.commit()
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(*sys.argv[1:])
