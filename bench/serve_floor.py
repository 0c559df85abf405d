"""Serve a bench app (bench/floor_app.py by default) on the server stack `keymint serve` uses.

    .venv/bin/python bench/serve_floor.py --bind 127.0.0.1:9300 --workers 1
    KEYMINT_DATABASE_URL=... .venv/bin/python bench/serve_floor.py --target lean_app:app

`--target module:app` names the WSGI app (a module in bench/ or the repository), by default
the floor; bench/lean_app.py, the lean introspection, is the other one.

The floor must run on the same WSGI server with the same settings as keymint, or
keymint/floor measures the servers instead of keymint. So this does not name a
server: it hands the floor to ``app.runtime.server.serve_wsgi``, the function `keymint serve`
itself runs (Granian with ``GRANIAN_SETTINGS``, keymint's logging and signal handling),
and fails loudly if app/runtime/server.py has none, rather than quietly measuring some other
stack. The target is imported once here before serving, so a broken or misconfigured one
fails at once instead of in a loop of respawned workers.
"""

from __future__ import annotations

import argparse
import importlib
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
    ap.add_argument("--target", default=TARGET, help=f"module:app to serve (default {TARGET})")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [HERE, REPO, *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # for spawned workers

    module, _, attribute = args.target.partition(":")
    try:
        getattr(importlib.import_module(module), attribute or "app")
    except Exception as exc:
        print(f"serve_floor.py: cannot load {args.target}: {exc!r}", file=sys.stderr)
        return 2

    import app.runtime.server as serving

    hook = getattr(serving, "serve_wsgi", None)
    if hook is None:
        print("serve_floor.py: app/runtime/server.py has no serve_wsgi(target, bind=, workers=); "
              f"cannot serve {args.target} on keymint's stack", file=sys.stderr)
        return 2
    hook(args.target, bind=args.bind, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
