"""Serve bench/floor_app.py on exactly the server stack `keymint serve` uses.

    .venv/bin/python bench/serve_floor.py --bind 127.0.0.1:9300 --workers 1

The floor must run on the same WSGI server with the same settings as keymint, or
keymint/floor measures the servers instead of keymint. So this does not name a
server: it asks app/serving.py, in this order,

1. ``serve_wsgi(target, bind=..., workers=...)`` or ``run(bind, workers, target=...)``:
   a hook that serves any WSGI target ("module:attr") with keymint's settings;
2. a gunicorn ``BaseApplication`` subclass ``KeymintServer`` + ``SERVER_SETTINGS``
   (what app/serving.py had when this was written): subclassed to load the floor;
3. ``GRANIAN_SETTINGS`` (dict of ``granian.Granian`` keyword arguments): Granian
   with those settings and the floor as target.

and fails loudly otherwise, rather than quietly measuring some other stack.
"""

from __future__ import annotations

import argparse
import inspect
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

    import app.serving as serving

    hook = getattr(serving, "serve_wsgi", None)
    if hook is not None:
        hook(TARGET, bind=args.bind, workers=args.workers)
        return 0
    run = getattr(serving, "run", None)
    if run is not None and "target" in inspect.signature(run).parameters:
        run(args.bind, args.workers, target=TARGET)
        return 0
    if hasattr(serving, "KeymintServer") and hasattr(serving, "SERVER_SETTINGS"):
        from floor_app import app as floor

        class FloorServer(serving.KeymintServer):
            def load(self):
                return floor

        FloorServer({**serving.SERVER_SETTINGS, "bind": args.bind, "workers": args.workers}).run()
        return 0
    if hasattr(serving, "GRANIAN_SETTINGS"):
        from granian import Granian

        host, _, port = args.bind.rpartition(":")
        settings = {
            **serving.GRANIAN_SETTINGS,
            "address": host,
            "port": int(port),
            "workers": args.workers,
        }
        Granian(TARGET, **settings).serve()
        return 0
    print(
        "serve_floor.py: app/serving.py exposes none of serve_wsgi(), run(target=), "
        "KeymintServer+SERVER_SETTINGS, GRANIAN_SETTINGS; cannot serve the floor on "
        "keymint's stack",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
