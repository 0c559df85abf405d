#!/usr/bin/env bash
# Choose keymint's production WSGI server by measurement.
#
# Serves bench/floor_app.py (a bare Flask route) with each candidate server, one
# process, pinned to CPU 0, and drives it with wrk pinned to CPU 1 (bench-peers' lua
# scripts: 8 connections, body checked on every response; bench/lib.sh also records the
# server's CPU time per run). Candidates are started
# together and measured round-robin, the order reversed every other round, so drift
# on this shared machine hits all of them alike; the summary quotes medians.
#
#   bench/wsgi_compare.sh                       # everything below at its default
#   ROUNDS=1 DURATION=3 MODES=keepalive SPINS=0 bench/wsgi_compare.sh   # quick look
#
# env (defaults in brackets):
#   CANDIDATES ["gunicorn-sync gunicorn-gthread-t1 gunicorn-gthread-t8 gunicorn-gthread-t16
#              granian granian-t1 granian-t8 waitress-t8 cheroot-t8"]
#     -tN = N threads (gunicorn gthread --threads, granian --blocking-threads, waitress/
#     cheroot --threads); plain "granian" = its default (backlog/2 = 512 blocking threads);
#     also uwsgi-tN (pyuwsgi --http11-socket; it resets every connection, see docs).
#   ROUNDS [3] DURATION [10] seconds per wrk run
#   MODES ["keepalive close"]  close = every request sends Connection: close
#   SPINS ["0 1000"]   µs of pure-Python CPU per request (floor_app ?spin_us=); 0 = bare floor
#   OUTDIR [mktemp -d]  results.csv, rss.csv, summary.md, server logs
#   CMP_VENV [/tmp/keymint-wsgi-cmp]  venv holding the candidates (created, pinned)
#   PEERS_DIR [/tmp/keymint-peers], KEYMINT_PEERS_SRC [<repo>/../shared/bench-peers]
#   APP [floor_app:app] APP_DIR [bench/]  TARGET_PATH [/floor]  CID/SECRET [x/y]
#   INTROSPECT_PATH [-]  also run bench.sh's introspection test against this path
#   APP_PYTHONPATH []    extra import path for the app's own dependencies
#   EXTRA_ENV []         "NAME=value ..." for the servers
#     (point these at keymint itself to rank the servers under the real app, e.g.
#      APP=wsgi:app APP_DIR=. TARGET_PATH=/oauth/token INTROSPECT_PATH=/oauth/introspect
#      CID=key_... SECRET=sk_... APP_PYTHONPATH=.venv/lib/python3.11/site-packages
#      EXTRA_ENV="KEYMINT_DATABASE_URL=sqlite:////tmp/x.db AUTHLIB_INSECURE_TRANSPORT=1
#      KEYMINT_RATELIMIT_ENABLED=false" SPINS=0)
# Only 127.0.0.1 is used. Every server it starts is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/.." && pwd -P)
PEERS_SRC=${KEYMINT_PEERS_SRC:-$REPO/../shared/bench-peers}
export PEERS_DIR=${PEERS_DIR:-/tmp/keymint-peers}
CMP_VENV=${CMP_VENV:-/tmp/keymint-wsgi-cmp}
CANDIDATES=${CANDIDATES:-"gunicorn-sync gunicorn-gthread-t1 gunicorn-gthread-t8 gunicorn-gthread-t16 granian granian-t1 granian-t8 waitress-t8 cheroot-t8"}
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}
MODES=${MODES:-"keepalive close"}; SPINS=${SPINS:-"0 1000"}
APP=${APP:-floor_app:app}; APP_DIR=${APP_DIR:-$HERE}; TARGET_PATH=${TARGET_PATH:-/floor}
CID=${CID:-x}; SECRET=${SECRET:-y}; INTROSPECT_PATH=${INTROSPECT_PATH:--}
OUTDIR=${OUTDIR:-$(mktemp -d /tmp/keymint-wsgi-XXXXXX)}; mkdir -p "$OUTDIR"
BASE_PORT=${BASE_PORT:-9110}
# the versions measured; keymint's own venv pins gunicorn in pyproject.toml
CMP_PINS="Flask==3.1.3 Werkzeug==3.1.9 gunicorn==27.0.1 granian==2.8.9 waitress==3.0.2 pyuwsgi==2.0.30.post1 cheroot==11.1.2"

say() { printf '== %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
command -v wrk > /dev/null || { say "installing wrk"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk > /dev/null; }
[ -x "$PEERS_DIR/bench.sh" ] || PEERS_DIR=$PEERS_DIR "$PEERS_SRC/setup.sh"
if ! "$CMP_VENV/bin/python" -c 'import flask, gunicorn, granian, waitress, cheroot, pyuwsgi' 2> /dev/null; then
  say "creating $CMP_VENV with $CMP_PINS"
  python3 -m venv "$CMP_VENV"
  # shellcheck disable=SC2086
  "$CMP_VENV/bin/pip" install -q --disable-pip-version-check $CMP_PINS
fi
V=$CMP_VENV/bin

cmd_for() {  # candidate port -> prints the server command line
  local c=$1 port=$2 n=${1##*-t}
  case $c in
    gunicorn-sync)       echo "$V/gunicorn $APP -w 1 -b 127.0.0.1:$port --no-control-socket --backlog 2048" ;;
    gunicorn-gthread-t*) echo "$V/gunicorn $APP -w 1 -k gthread --threads $n --keep-alive 5 -b 127.0.0.1:$port --no-control-socket --backlog 2048" ;;
    granian)             echo "$V/granian --interface wsgi --host 127.0.0.1 --port $port --workers 1 --no-ws --log-level warning $APP" ;;
    granian-t*)          echo "$V/granian --interface wsgi --host 127.0.0.1 --port $port --workers 1 --blocking-threads $n --no-ws --log-level warning $APP" ;;
    waitress-t*)         echo "$V/waitress-serve --host 127.0.0.1 --port $port --threads $n $APP" ;;
    uwsgi-t*)            echo "$V/uwsgi --http11-socket 127.0.0.1:$port --module $APP --processes 1 --threads $n --disable-logging --die-on-term" ;;
    cheroot-t*)          echo "$V/cheroot --bind 127.0.0.1:$port --threads $n $APP" ;;
    *) say "unknown candidate $c"; return 1 ;;
  esac
}

declare -A PID PORT
stop_all() {
  local c pid kids
  for c in "${!PID[@]}"; do
    pid=${PID[$c]}
    kill -0 "$pid" 2> /dev/null || continue
    kids=$(pgrep -P "$pid" || true)
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
    # shellcheck disable=SC2086
    for k in $pid $kids; do kill -0 "$k" 2> /dev/null && kill -9 "$k" 2> /dev/null; done
  done
  return 0
}
trap stop_all EXIT

i=0
for c in $CANDIDATES; do
  port=$((BASE_PORT + i)); i=$((i + 1))
  if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then say "127.0.0.1:$port busy"; exit 1; fi
  # shellcheck disable=SC2046
  (cd "$APP_DIR" && exec env PYTHONPATH="$APP_DIR${APP_PYTHONPATH:+:$APP_PYTHONPATH}" ${EXTRA_ENV:-} taskset -c 0 $(cmd_for "$c" "$port")) > "$OUTDIR/$c.log" 2>&1 &
  PID[$c]=$!; PORT[$c]=$port
done
for c in $CANDIDATES; do
  ok=0
  for _ in $(seq 1 60); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:${PORT[$c]}$TARGET_PATH"; then ok=1; break; fi
    kill -0 "${PID[$c]}" 2> /dev/null || break; sleep 0.5
  done
  [ $ok = 1 ] || { say "$c did not start, see $OUTDIR/$c.log"; tail -5 "$OUTDIR/$c.log" >&2; exit 1; }
done
say "servers up: $(for c in $CANDIDATES; do printf '%s:%s ' "$c" "${PORT[$c]}"; done)"

echo "candidate,pid_rss_kb_start" > "$OUTDIR/rss.csv"
for c in $CANDIDATES; do echo "$c,$(rss_kb "${PID[$c]}")" >> "$OUTDIR/rss.csv"; done

RESULTS=$OUTDIR/results.csv; LOGDIR=$OUTDIR/logs; mkdir -p "$LOGDIR"
BENCH_DURATION=$DURATION; BENCH_CONNS=${CONNS:-8}; WRK_CPU=${WRK_CPU-1}
export BENCH_LUA_DIR=$PEERS_DIR/lua
order=($CANDIDATES)
for mode in $MODES; do
  for spin in $SPINS; do
    q=""; [ "$spin" != 0 ] && q="?spin_us=$spin"
    cc=0; [ "$mode" = close ] && cc=1
    for r in $(seq 1 "$ROUNDS"); do
      say "mode=$mode spin_us=$spin round $r/$ROUNDS"
      list=("${order[@]}")
      if [ $((r % 2)) = 0 ]; then mapfile -t list < <(printf '%s\n' "${order[@]}" | tac); fi
      for c in "${list[@]}"; do
        BENCH_CONN_CLOSE=$cc BENCH_BASIC=$(printf '%s:%s' "$CID" "$SECRET" | base64 -w0) BENCH_SCOPE="" \
          BENCH_EXPECT=access_token run_wrk "$c|$mode|$spin" token "$BENCH_LUA_DIR/token.lua" \
          "http://127.0.0.1:${PORT[$c]}$TARGET_PATH$q" "${PID[$c]}" || say "run failed: $c $mode $spin"
        if [ "$INTROSPECT_PATH" != - ]; then
          tok=$(get_token "http://127.0.0.1:${PORT[$c]}" "$TARGET_PATH" "$CID" "$SECRET")
          BENCH_CONN_CLOSE=$cc BENCH_BASIC=$(printf '%s:%s' "$CID" "$SECRET" | base64 -w0) BENCH_TOKEN=$tok \
            BENCH_EXPECT='"active"%s*:%s*true' run_wrk "$c|$mode|$spin" introspect "$BENCH_LUA_DIR/introspect.lua" \
            "http://127.0.0.1:${PORT[$c]}$INTROSPECT_PATH" "${PID[$c]}" || say "run failed: $c $mode $spin"
        fi
      done
    done
  done
done

echo "candidate,rss_kb_end" > "$OUTDIR/rss_end.csv"
for c in $CANDIDATES; do echo "$c,$(rss_kb "${PID[$c]}")" >> "$OUTDIR/rss_end.csv"; done

"$V/python" - "$OUTDIR" > "$OUTDIR/summary.md" << 'EOF'
import csv, statistics as st, sys, os
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
rss0 = {r["candidate"]: int(r["pid_rss_kb_start"]) for r in csv.DictReader(open(os.path.join(out, "rss.csv")))}
rss1 = {r["candidate"]: int(r["rss_kb_end"]) for r in csv.DictReader(open(os.path.join(out, "rss_end.csv")))}
groups = {}
for r in rows:
    cand, mode, spin = r["label"].split("|")
    groups.setdefault((mode, int(spin), r["test"]), {}).setdefault(cand, []).append(r)
print("| mode | spin µs | test | server | runs | req/s (median) | vs gunicorn-sync | server CPU µs/req | p50 ms | p99 ms | failed | RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (mode, spin, test) in sorted(groups):
    g = groups[(mode, spin, test)]
    base = st.median(float(x["rps"]) for x in g["gunicorn-sync"]) if "gunicorn-sync" in g else None
    for cand, rs in sorted(g.items(), key=lambda kv: -st.median(float(x["rps"]) for x in kv[1])):
        rps = st.median(float(x["rps"]) for x in rs)
        failed = sum(int(x["bad"]) + sum(int(x[k]) for k in x if k.startswith("err_")) for x in rs)
        ratio = f"{rps / base:.2f}" if base else "-"
        cpus = [float(x["server_cpu_s"]) * 1e6 / int(x["requests"]) for x in rs if x.get("server_cpu_s") and int(x["requests"])]
        cpu = f"{st.median(cpus):.0f}" if cpus else "-"
        print(f"| {mode} | {spin} | {test} | {cand} | {len(rs)} | {rps:.0f} | {ratio} | {cpu} | "
              f"{st.median(float(x['p50_ms']) for x in rs):.2f} | {st.median(float(x['p99_ms']) for x in rs):.2f} | "
              f"{failed} | {rss1.get(cand, 0) / 1024:.0f} |")
EOF
cat "$OUTDIR/summary.md"
say "results in $OUTDIR"
