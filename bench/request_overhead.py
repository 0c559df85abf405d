"""What keymint's per-request machinery costs: request id, security headers, telemetry, limits.

Issue budget: rate-limit check, metrics, the JSON request log line, security headers and the
request id together at most 60 µs of CPU per request. This measures each part the only way a
shared machine allows: the same in-process request (Flask test client, production logging
to /dev/null, rate limiting on with in-memory storage) with one part switched off at a
time, rounds interleaved, and the difference of the per-round minimum CPU times taken as
that part's cost. The bare Flask app (bench/floor_app.py) in the same harness is the floor.

    .venv/bin/python bench/request_overhead.py [-n 3000] [-r 7]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import profile_hot_paths  # noqa: E402  (bench/, after the path fix-up)


def _hooks(app, bucket: str, names: set[str]) -> list:
    funcs = getattr(app, bucket)[None]
    return [f for f in funcs if f.__name__ in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("-r", "--rounds", type=int, default=7)
    args = parser.parse_args()

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    try:
        import floor_app

        from app.runtime import limiter, metrics
        from app.web import telemetry

        url = profile_hot_paths._prepare_database(None)
        app, auth = profile_hot_paths.build(url, True)
        client = app.test_client()
        floor = floor_app.app.test_client()
        counter = app.extensions[limiter._EXTENSION]
        token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=auth).json["access_token"]
        request_log = logging.getLogger("keymint.request")

        hooks = {
            "request id + security headers": [
                ("before_request_funcs", _hooks(app, "before_request_funcs",
                                                {"_assign_request_id"})),
                ("after_request_funcs", _hooks(app, "after_request_funcs",
                                               {"_common_headers"}))],
            "telemetry (clock, metrics, log line)": [
                ("before_request_funcs", _hooks(app, "before_request_funcs", {"_start_clock"})),
                ("after_request_funcs", _hooks(app, "after_request_funcs", {"_record"}))],
        }
        count_request = metrics.count_request

        def healthz() -> None:
            client.get("/healthz")

        def introspect() -> None:
            r = client.post("/oauth/introspect", data={"token": token}, auth=auth)
            assert r.status_code == 200

        def timed(call, n: int) -> float:
            cpu = time.process_time()
            for _ in range(n):
                call()
            return (time.process_time() - cpu) / n * 1e6

        def without_hooks(name: str):
            def run(call, n: int) -> float:
                removed = hooks[name]
                for bucket, funcs in removed:
                    for f in funcs:
                        getattr(app, bucket)[None].remove(f)
                try:
                    return timed(call, n)
                finally:
                    for bucket, funcs in removed:
                        getattr(app, bucket)[None].extend(funcs)
            return run

        def without_metrics(call, n: int) -> float:
            telemetry.metrics.count_request = lambda *a: None
            try:
                return timed(call, n)
            finally:
                telemetry.metrics.count_request = count_request

        def without_log(call, n: int) -> float:
            level = request_log.level
            request_log.setLevel(logging.WARNING)
            try:
                return timed(call, n)
            finally:
                request_log.setLevel(level)

        def without_limits(call, n: int) -> float:
            app.extensions[limiter._EXTENSION] = None
            try:
                return timed(call, n)
            finally:
                app.extensions[limiter._EXTENSION] = counter

        cases = {
            "bare Flask (floor_app, GET)": (lambda: floor.get("/floor"), timed),
            "keymint GET /healthz": (healthz, timed),
            "  without request id + security headers":
                (healthz, without_hooks("request id + security headers")),
            "  without telemetry (clock, metrics, log line)":
                (healthz, without_hooks("telemetry (clock, metrics, log line)")),
            "  without metrics only": (healthz, without_metrics),
            "  without the log line only": (healthz, without_log),
            "keymint POST /oauth/introspect": (introspect, timed),
            "  without rate limiting": (introspect, without_limits),
        }
        for call, run in cases.values():  # warm-up
            run(call, 300)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for round_no in range(args.rounds):
            names = list(cases) if round_no % 2 == 0 else list(reversed(cases))
            for name in names:
                call, run = cases[name]
                samples[name].append(run(call, args.n))
    finally:
        os.dup2(saved, 2)
        os.close(devnull)

    best = {name: min(values) for name, values in samples.items()}
    print(f"n={args.n} rounds={args.rounds}; CPU µs per request, minimum over rounds")
    print(f"{'case':<50}{'µs':>8}{'part costs':>12}")
    base = None
    for name, value in best.items():
        if not name.startswith(" "):
            base = value
            print(f"{name:<50}{value:>8.1f}")
        else:
            print(f"{name:<50}{value:>8.1f}{base - value:>12.1f}")


if __name__ == "__main__":
    main()
