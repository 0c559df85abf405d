"""The tiny resource server of bench/resource_server_bench.py: one JSON route, bare or behind
keymint-resource's WSGI middleware, configured from the environment (each worker builds it).

    RS_BENCH_MODE      unprotected | jwt | jwt_nocache | opaque_cached | opaque_nocache
    RS_BENCH_ISSUER    keymint's issuer URL (a running `keymint serve`)
    RS_BENCH_CLIENT_ID, RS_BENCH_CLIENT_SECRET   a key with the `introspect` scope
    RS_BENCH_AUDIENCE  this resource's identifier, checked against each token's `aud`

Served like the floor, on keymint's own server stack::

    RS_BENCH_MODE=unprotected .venv/bin/python bench/serve_floor.py --target rs_app:app

The route does what a real one does with the decision (reads the AccessToken the middleware
left in the environ) and nothing else, so the difference between the modes is the library.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from keymint_resource import TokenVerifier
from keymint_resource.wsgi import ENVIRON_KEY, BearerMiddleware

# TokenVerifier options per mode; None: no middleware at all.
MODES: dict[str, dict[str, Any] | None] = {
    "unprotected": None,
    "jwt": {},                              # local validation, verified tokens cached (default)
    "jwt_nocache": {"jwt_cache": False},    # every request's signature checked
    "opaque_cached": {},                    # introspection answers reused for max_stale (5 s)
    "opaque_nocache": {"cache": False},     # one introspection per request
}

api = Flask(__name__)


@api.get("/orders")
def orders() -> Any:
    access = request.environ.get(ENVIRON_KEY)
    return jsonify(orders=[], client_id=access.client_id if access is not None else None)


def build() -> Any:
    mode = os.environ.get("RS_BENCH_MODE", "unprotected")
    if mode not in MODES:
        raise SystemExit(f"rs_app: RS_BENCH_MODE must be one of {', '.join(MODES)}")
    options = MODES[mode]
    if options is None:
        return api
    verifier = TokenVerifier(os.environ["RS_BENCH_ISSUER"], os.environ["RS_BENCH_CLIENT_ID"],
                             os.environ["RS_BENCH_CLIENT_SECRET"],
                             audience=os.environ.get("RS_BENCH_AUDIENCE"), **options)
    return BearerMiddleware(api, verifier)


app = build()
