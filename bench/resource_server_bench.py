"""What keymint-resource costs a resource server: req/s of a tiny API (bench/rs_app.py)
unprotected, and protected by the library with JWTs (local validation, with and without the
cache of verified tokens) and opaque tokens (introspection, with and without the cache).

    .venv/bin/python bench/resource_server_bench.py                 # 5 s per mode, 1 round
    .venv/bin/python bench/resource_server_bench.py --duration 10 --rounds 3

What it does, all on 127.0.0.1, every process it starts stopped at the end:
  1. a fresh SQLite database in a temporary directory: `keymint db upgrade`, a user, two
     workspaces (one keeps opaque tokens, one is switched to JWT through the API), a key in
     each, a signing key (`keymint signing-keys rotate --now`);
  2. a real `keymint serve --workers 1` (rate limiting off: the uncached opaque mode
     introspects once per request), pinned to CPU 1 with wrk;
  3. one resource server per mode, each bench/rs_app.py on keymint's own server stack
     (bench/serve_floor.py: Granian with `keymint serve`'s settings, 1 worker), pinned to
     CPU 0; the same Flask app in every mode, the library's BearerMiddleware around it in
     the protected ones;
  4. per round and mode (order reversed every other round): a smoke request (200 with the
     token's client_id, and 401 without a token when protected), then wrk (1 thread,
     --conns connections, --duration s, CPU 1) GETting /orders with `Authorization: Bearer`
     (bench/lua/bearer_get.lua; bench-peers' common.lua checks every response). The same
     request is sent to the unprotected server. The server's CPU time per run is recorded;
  5. a table (median req/s over rounds, ratio to unprotected, p50/p99, server CPU per
     request) on stdout and in OUT/report.md, with results.csv and meta.json.

The JWT is minted just before each JWT run (JWTs live 300 s); wrk sends one token again and
again, as one client does for the token's lifetime: `jwt` is the steady state of the cache of
verified tokens, `jwt_nocache` what every first sight of a token costs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
MODES = ["unprotected", "jwt", "jwt_nocache", "opaque_cached", "opaque_nocache"]
LABELS = {
    "unprotected": "unprotected (no middleware)",
    "jwt": "JWT, local validation (verified-token cache, default)",
    "jwt_nocache": "JWT, local validation, `jwt_cache=False` (signature every request)",
    "opaque_cached": "opaque, introspection, cache hits (`max_stale` 5 s, default)",
    "opaque_nocache": "opaque, introspection, `cache=False` (keymint asked every request)",
}
EMAIL = "rs-bench@keymint.test"
SERVER_CPU, WRK_CPU = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(*parts: Any) -> None:
    print("==", *parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(db_url: str, kek: str) -> dict[str, str]:
    pythonpath = os.pathsep.join([str(REPO), str(REPO / "clients" / "python"),
                                  *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": pythonpath, "KEYMINT_DATABASE_URL": db_url,
            "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY": kek, "AUTHLIB_INSECURE_TRANSPORT": "1",
            "KEYMINT_RATELIMIT_ENABLED": "false"}


def keymint(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PY, "-m", "app.cli", *args], cwd=REPO, env=env, text=True,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"keymint {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


class Processes:
    """Every process started here, each in its own session; stop() ends them by process group
    (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path, cpu: str | None
              ) -> subprocess.Popen[bytes]:
        pinned = ["taskset", "-c", cpu, *argv] if cpu is not None else argv
        with open(log, "wb") as out:
            proc = subprocess.Popen(pinned, cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.started:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # its workers too, if any outlived it
            proc.wait(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the session (and group) this script started it in


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited; see {log}:\n{log.read_text()[-1500:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.25)
    raise SystemExit(f"{url}: no answer after {timeout:.0f} s; see {log}")


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    todo, found = [root], []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def token(base: str, key: dict[str, str]) -> str:
    response = requests.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(key["client_id"], key["client_secret"]), timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def wrk(url: str, bearer: str, args: argparse.Namespace, log: Path) -> dict[str, float]:
    env = {**os.environ, "BENCH_LUA_DIR": str(args.lua_dir), "BENCH_TOKEN": bearer,
           "BENCH_EXPECT": '"orders"'}
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{args.conns}", f"-d{args.duration}s",
            "--timeout", "10s", "-s", str(HERE / "lua" / "bearer_get.lua"), url]
    result = subprocess.run(argv, env=env, capture_output=True, text=True,
                            timeout=args.duration + 60, check=False)
    log.write_text(result.stdout + result.stderr)
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk produced no RESULT line; see {log}")
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def smoke(url: str, bearer: str, protected: bool, client_id: str) -> None:
    answer = requests.get(url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
    assert answer.status_code == 200, (url, answer.status_code, answer.text)
    assert answer.json()["client_id"] == (client_id if protected else None), answer.text
    if protected:
        refused = requests.get(url, timeout=30)
        assert refused.status_code == 401, (url, refused.status_code)
    for _ in range(20):  # warm: discovery, JWKS, first-request paths
        requests.get(url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def main() -> int:
    peers = Path(os.environ.get("KEYMINT_PEERS_SRC", REPO.parent / "shared" / "bench-peers"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds over every mode (1)")
    ap.add_argument("--conns", type=int, default=8, help="wrk connections (8)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    ap.add_argument("--lua-dir", type=Path, default=peers / "lua",
                    help="bench-peers' lua directory (its common.lua checks every response)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (a new temp dir)")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: choose from {', '.join(MODES)}")
    if not (args.lua_dir / "common.lua").is_file():
        ap.error(f"{args.lua_dir}/common.lua not found (set KEYMINT_PEERS_SRC or --lua-dir)")
    out = args.out or Path(tempfile.mkdtemp(prefix="keymint-rs-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    say(f"output in {out}")

    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    env = base_env(f"sqlite:///{out / 'keymint.sqlite3'}", kek)
    say("keymint: migrate, user, workspaces, keys, signing key")
    keymint(env, "db", "upgrade")
    keymint(env, "users", "create", EMAIL)
    keymint(env, "workspaces", "create", "rs-opaque", "--owner", EMAIL)
    keymint(env, "workspaces", "create", "rs-jwt", "--owner", EMAIL)
    # The resource server's key (introspect) also mints the opaque token it is sent.
    rs_key = json.loads(keymint(env, "keys", "create", "--workspace", "rs-opaque", "--user",
                                EMAIL, "--name", "resource server", "--scope",
                                "introspect keys:read", "--json"))
    # The JWT workspace's owner key: switches its workspace to JWT, then mints JWTs.
    jwt_key = json.loads(keymint(env, "keys", "create", "--workspace", "rs-jwt", "--user",
                                 EMAIL, "--name", "jwt client", "--scope",
                                 "keys:read members:read members:write", "--json"))
    keymint(env, "signing-keys", "rotate", "--now", "--json")

    procs = Processes()
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = out / "keymint.log"
        server = procs.start([PY, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}",
                              "--workers", "1"], env, log, WRK_CPU)
        wait_http(f"{base}/healthz", server, log)
        switched = requests.patch(f"{base}/api/v1/workspace", json={"token_format": "jwt"},
                                  headers={"Authorization": f"Bearer {token(base, jwt_key)}"},
                                  timeout=30)
        assert switched.status_code == 200, switched.text
        opaque = token(base, rs_key)
        assert opaque.count(".") != 2 and token(base, jwt_key).count(".") == 2

        rs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for mode in modes:
            rs_port = free_port()
            # The audience is checked as a real resource server would: these tokens name no
            # resource, so they are for keymint's own API.
            rs_env = {**env, "RS_BENCH_MODE": mode, "RS_BENCH_ISSUER": base,
                      "RS_BENCH_AUDIENCE": f"{base}/api/v1",
                      "RS_BENCH_CLIENT_ID": rs_key["client_id"],
                      "RS_BENCH_CLIENT_SECRET": rs_key["client_secret"]}
            for name in ("KEYMINT_DATABASE_URL", "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"):
                rs_env.pop(name)  # the resource server knows keymint only over HTTP
            rs_log = out / f"rs-{mode}.log"
            proc = procs.start([PY, str(HERE / "serve_floor.py"), "--target", "rs_app:app",
                                "--bind", f"127.0.0.1:{rs_port}", "--workers", "1"],
                               rs_env, rs_log, SERVER_CPU)
            rs[mode] = (f"http://127.0.0.1:{rs_port}/orders", proc)
            wait_http(rs[mode][0], proc, rs_log)

        rows: list[dict[str, Any]] = []
        for r in range(1, args.rounds + 1):
            order = modes if r % 2 else list(reversed(modes))
            for mode in order:
                url, proc = rs[mode]
                is_jwt = mode.startswith("jwt")
                bearer = token(base, jwt_key) if is_jwt else opaque
                client_id = jwt_key["client_id"] if is_jwt else rs_key["client_id"]
                smoke(url, bearer, mode != "unprotected", client_id)
                before = cpu_seconds(proc.pid)
                result = wrk(url, bearer, args, out / f"wrk-{mode}-{r}.log")
                cpu = cpu_seconds(proc.pid) - before
                errors = sum(result[k] for k in result if k.startswith("err_")) + result["bad"]
                row = {"round": r, "mode": mode, "requests": int(result["requests"]),
                       "rps": result["rps"], "p50_ms": result["p50_ms"],
                       "p99_ms": result["p99_ms"], "errors": int(errors),
                       "server_cpu_s": round(cpu, 2),
                       "cpu_ms_per_req": round(cpu * 1000 / max(result["requests"], 1), 4)}
                rows.append(row)
                say(f"round {r} {mode:15s} {row['rps']:8.0f} req/s  p50 {row['p50_ms']} ms  "
                    f"p99 {row['p99_ms']} ms  cpu/req {row['cpu_ms_per_req']} ms  "
                    f"errors {row['errors']}")
    finally:
        procs.stop()

    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3], "nproc": os.cpu_count(),
            "python": platform.python_version(), "duration_s": args.duration,
            "rounds": args.rounds, "conns": args.conns, "server_cpu": SERVER_CPU,
            "wrk_and_keymint_cpu": WRK_CPU}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    report = render(rows, modes, meta)
    (out / "report.md").write_text(report)
    print(report)
    return 0


def render(rows: list[dict[str, Any]], modes: list[str], meta: dict[str, Any]) -> str:
    def median(mode: str, field: str) -> float:
        return statistics.median(row[field] for row in rows if row["mode"] == mode)

    floor = median("unprotected", "rps") if "unprotected" in modes else None
    floor_cpu = median("unprotected", "cpu_ms_per_req") if floor else None
    lines = ["| resource server | req/s | vs unprotected | p50 ms | p99 ms "
             "| server CPU ms/req | errors |", "|---|---|---|---|---|---|---|"]
    for mode in modes:
        rps = median(mode, "rps")
        ratio = f"{rps / floor:.2f}x" if floor else "n/a"
        cpu = median(mode, "cpu_ms_per_req")
        extra = f" (+{cpu - floor_cpu:.3f})" if floor_cpu is not None and mode != "unprotected" \
            else ""
        errors = sum(row["errors"] for row in rows if row["mode"] == mode)
        lines.append(f"| {LABELS[mode]} | {rps:.0f} | {ratio} | {median(mode, 'p50_ms'):.2f} "
                     f"| {median(mode, 'p99_ms'):.2f} | {cpu:.3f}{extra} | {errors} |")
    lines.append("")
    lines.append(f"{meta['date']}: {meta['rounds']} round(s) of {meta['duration_s']} s per mode, "
                 f"wrk 1 thread / {meta['conns']} connections; resource server (1 Granian "
                 f"worker) on CPU {meta['server_cpu']}, wrk and keymint on CPU "
                 f"{meta['wrk_and_keymint_cpu']}; load average at the end "
                 f"{' '.join(meta['loadavg_end'])}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
