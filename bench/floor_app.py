"""The floor: the cheapest possible Flask request on a given WSGI server stack.

One route, ``/floor`` (GET or POST), answering a tiny JSON object with no database,
no auth and no Authlib. Whatever keymint does on top of this costs time; the ratio
keymint/floor says how much of the server's capacity keymint's own work uses.

The body contains both ``access_token`` and ``"active": true`` so the shared wrk
scripts (bench-peers/lua, which check the body of every response) and bench-peers'
bench.sh smoke tests accept it for the token and the introspection test alike.

``/floor?spin_us=N`` additionally burns N microseconds of pure-Python CPU while
holding the GIL, a stand-in for an application's own per-request work; it is how
bench/wsgi_compare.sh sees how each server's threading behaves once requests cost
something (GIL hand-offs, latency tails). Without a query string it is not looked at.

Run it on keymint's own server stack (app/runtime/server.py, the settings of `keymint serve`)::

    .venv/bin/python bench/serve_floor.py --bind 127.0.0.1:9100 --workers 1
"""

from time import perf_counter

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/floor", methods=["GET", "POST"])
def floor():
    if request.query_string:
        spin = request.args.get("spin_us", 0, type=int)
        if spin > 0:
            end = perf_counter() + min(spin, 1_000_000) / 1e6
            while perf_counter() < end:
                pass
    return jsonify(access_token="floor", token_type="Bearer", active=True)
