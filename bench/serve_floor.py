"""Serve bench/floor_app.py on exactly the server stack `keymint serve` uses.

    .venv/bin/python bench/serve_floor.py --bind 127.0.0.1:9300 --workers 1

The floor must run on the same WSGI server with the same settings as keymint, or
keymint/floor measures the servers instead of keymint. So this does not name a
server: it hands the floor to ``app.runtime.server.serve_wsgi``, the function `keymint serve`
itself runs (Granian with ``GRANIAN_SETTINGS``, keymint's logging and signal handling),
and fails loudly if app/runtime/server.py has none, rather than quietly measuring some other
stack.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (HERE, REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

TARGET = "floor_app:app"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1:9300")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [HERE, REPO, *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # for spawned workers

    import app.runtime.server as serving

    hook = getattr(serving, "serve_wsgi", None)
    if hook is None:
        print("serve_floor.py: app/runtime/server.py has no serve_wsgi(target, bind=, workers=); "
              "cannot serve the floor on keymint's stack", file=sys.stderr)
        return 2
    hook(TARGET, bind=args.bind, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
