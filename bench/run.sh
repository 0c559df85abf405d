#!/usr/bin/env bash
# keymint performance benchmark: one command, loopback only.
#
#   bench/run.sh                                  # the full run (~27 min on 2 cores)
#   BENCH_DURATION=5 BENCH_ROUNDS=1 BENCH_TOKENS=0 BENCH_DBS=sqlite bench/run.sh   # quick pass
#   BENCH_AUDIT=1 bench/run.sh                    # adds the auditing-cost phase (~3 min more)
#   BENCH_MAIN=0 BENCH_SCALE=0 BENCH_PEERS=0 BENCH_AUDIT=1 bench/run.sh   # that phase alone
#
# What it does
#   1. ensures wrk/curl/taskset (apt-get) and the peers (bench-peers/setup.sh into $PEERS_DIR)
#   2. for each database in BENCH_DBS and N in BENCH_TOKENS: a fresh database (SQLite file,
#      or a PostgreSQL database it creates and drops), `keymint db upgrade`, a user, a
#      workspace and a key through the CLI, N live tokens seeded by bench/seed_tokens.py,
#      and `keymint serve --workers 1` pinned to CPU 0
#   3. the floor (bench/floor_app.py on keymint's own server stack, bench/serve_floor.py),
#      per keymint target a lean floor on its database (bench/lean_app.py, the same way: the
#      least work an honest introspection can do, one joined SELECT on the raw driver) and
#      the peers (peers.sh start: hello, DOT, node-oidc-provider, naive Authlib), CPU 0
#   4. phase 1: BENCH_ROUNDS rounds, wrk pinned to CPU 1, 8 connections, BENCH_DURATION s
#      per run, bench-peers' lua scripts (token.lua, introspect.lua; common.lua checks every
#      response) plus bench/lua/ for the rest, every (server, test) once per round, order
#      reversed every other round; the server's CPU time per run is recorded too:
#        keymint: token (client_secret_basic), introspect (valid token), introspect_garbage
#        (at_... with a bad checksum), revoke_fresh (live seeded tokens, each once),
#        revoke_garbage, me (GET /api/v1/me, Bearer), introspect_seeded (N>0: random seeded
#        tokens); floor: token + introspect (POST /floor); lean (label lean|DB|N): introspect
#        (a fresh token from that target's keymint); oidc-provider, Authlib: token +
#        introspect; hello: token (= /hello)
#   5. phase 2 (BENCH_SCALE=1): keymint --workers 1 vs --workers 2, nothing pinned
#   6. phase 3 (BENCH_SOAK=1): RSS of one keymint worker over BENCH_SOAK_REQUESTS requests
#   7. phase 4 (BENCH_AUDIT=1): the cost of auditing (issue 6). Per database in BENCH_DBS a
#      fresh database of its own (no seeded tokens) and two `keymint serve --workers 1`
#      on it, both pinned to CPU 0: one with KEYMINT_AUDIT_ENABLED=false, one with the
#      default true. BENCH_ROUNDS rounds, order reversed every other round, of POST
#      /oauth/token (client_secret_basic, token.lua, wrk on CPU 1, BENCH_CONNS connections,
#      BENCH_DURATION s) against each; during every audited run a sealer loop
#      (`while :; do keymint audit seal; sleep 1; done`, pinned to BENCH_SEALER_CPU) runs
#      against the same database and is stopped afterwards (sealer.csv: invocations, events
#      sealed, its CPU time). After the last round: `keymint audit seal`, then
#      `keymint audit verify --json` (audit_verify.jsonl: must be ok with 0 unsealed).
#      Off by default: with the defaults it adds ~3 minutes (2 DBs x 3 rounds x 2 x 10 s
#      of wrk, plus setup).
#   8. bench/report.py: medians, ratios, p50/p99, target checks -> stdout, $BENCH_OUT/report.md
#      and docs/performance.md (BENCH_DOC=- to leave the doc alone)
# Every process it starts is stopped on exit, every database it creates is dropped.
#
# env (defaults in brackets)
#   BENCH_DBS ["sqlite postgresql"]   BENCH_TOKENS ["0 1000000"]   live tokens seeded per DB
#   BENCH_DURATION [10] s per wrk run  BENCH_ROUNDS [3]   BENCH_CONNS [8]
#   BENCH_MAIN [1]  0 = skip phase 1 (and the floor and peers with it)
#   BENCH_PEERS [1]   BENCH_SCALE [1]   BENCH_SOAK [0]   BENCH_SOAK_REQUESTS [1000000]
#   BENCH_AUDIT [0]   BENCH_SEALER_CPU [1]  where the phase-4 sealer loop runs: with wrk, not
#                     on the server's core (each `keymint audit seal` is a new Python process:
#                     ~0.8 s of CPU, nearly all interpreter and app start-up; a cron job that
#                     runs it once a minute pays that once a minute). "" = unpinned,
#                     0 = on the server's core (worst case)
#   BENCH_SOAK_CHUNK [30] s per soak wrk run
#   BENCH_CONN_CLOSE [0]  1 = every request sends "Connection: close" (like-for-like with
#                         gunicorn-sync peers; keep-alive is what pooled clients do)
#   BENCH_REVOKE_POOL [20000]  live tokens seeded per DB and per round for revoke_fresh (so
#                         "N=0" means: none but these, plus what the token test itself issues)
#   BENCH_PG_URL [postgresql+psycopg://postgres@127.0.0.1:5432]  server; a DB is created
#   BENCH_OUT [mktemp -d /tmp/keymint-bench-XXXXXX]  results.csv, meta.json, logs, report.md
#   BENCH_DOC [<repo>/docs/performance.md]   BENCH_BASE_PORT [9200]   BENCH_KEEP_DB [0]
#   PEERS_DIR [/tmp/keymint-peers]   KEYMINT_PEERS_SRC [<repo>/../shared/bench-peers]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/.." && pwd -P)
PEERS_SRC=${KEYMINT_PEERS_SRC:-$REPO/../shared/bench-peers}
export PEERS_DIR=${PEERS_DIR:-/tmp/keymint-peers}
BENCH_DBS=${BENCH_DBS:-"sqlite postgresql"}
BENCH_TOKENS=${BENCH_TOKENS:-"0 1000000"}
BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_CONNS=${BENCH_CONNS:-8}
BENCH_MAIN=${BENCH_MAIN:-1}
BENCH_PEERS=${BENCH_PEERS:-1}
BENCH_AUDIT=${BENCH_AUDIT:-0}
BENCH_SEALER_CPU=${BENCH_SEALER_CPU-1}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_SOAK=${BENCH_SOAK:-0}
BENCH_SOAK_REQUESTS=${BENCH_SOAK_REQUESTS:-1000000}
BENCH_SOAK_CHUNK=${BENCH_SOAK_CHUNK:-30}
BENCH_CONN_CLOSE=${BENCH_CONN_CLOSE:-0}
BENCH_REVOKE_POOL=${BENCH_REVOKE_POOL:-20000}
BENCH_PG_URL=${BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432}
BENCH_OUT=${BENCH_OUT:-$(mktemp -d /tmp/keymint-bench-XXXXXX)}
BENCH_DOC=${BENCH_DOC:-$REPO/docs/performance.md}
BASE_PORT=${BENCH_BASE_PORT:-9200}
BENCH_KEEP_DB=${BENCH_KEEP_DB:-0}
KEYMINT=$REPO/.venv/bin/keymint
PY=$REPO/.venv/bin/python
EMAIL=bench@keymint.test
SLUG=bench
PEER_SECRET=bench-secret-0123456789abcdef

say()  { printf '== %s\n' "$*" >&2; }
warn() { printf '!! %s\n' "$*" >&2; }
die()  { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

for v in BENCH_DURATION BENCH_ROUNDS BENCH_CONNS BENCH_REVOKE_POOL BENCH_SOAK_REQUESTS BENCH_SOAK_CHUNK BASE_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
for v in BENCH_MAIN BENCH_PEERS BENCH_SCALE BENCH_SOAK BENCH_AUDIT; do
  [[ ${!v} =~ ^[01]$ ]] || die "$v must be 0 or 1 (got '${!v}')"
done
[[ $BENCH_SEALER_CPU =~ ^[0-9]*$ ]] || die "BENCH_SEALER_CPU must be a CPU number or empty"
[ "$BENCH_MAIN" = 1 ] || BENCH_PEERS=0   # the peers are only measured in phase 1
for n in $BENCH_TOKENS; do [[ $n =~ ^[0-9]+$ ]] || die "BENCH_TOKENS: '$n' is not a number"; done
for d in $BENCH_DBS; do case $d in sqlite|postgresql) ;; *) die "BENCH_DBS: unknown '$d'";; esac; done
# loopback only, for PostgreSQL too
if [[ " $BENCH_DBS " == *" postgresql "* ]] &&
   ! [[ $BENCH_PG_URL =~ ^postgresql(\+psycopg)?://[^@/]+@(127\.0\.0\.1|localhost)(:[0-9]+)?/?$ ]]; then
  die "BENCH_PG_URL must be postgresql+psycopg://USER@127.0.0.1:PORT (got $BENCH_PG_URL)"
fi
[ -x "$KEYMINT" ] || die "$KEYMINT not found: pip install -e '.[bench]' in $REPO/.venv first"

mkdir -p "$BENCH_OUT"/{db,run,logs}
BENCH_OUT=$(cd "$BENCH_OUT" && pwd -P)
RESULTS=$BENCH_OUT/results.csv
[ -f "$RESULTS" ] || echo "$CSV_HEADER" > "$RESULTS"
say "output in $BENCH_OUT"

# ---------------------------------------------------------------- cleanup ----------
declare -a PIDS=()      # every server process we started (master pids)
declare -a PG_DBS=()    # every PostgreSQL database we created
PEERS_STARTED=0
stop_pid() {
  local pid=$1 kids k
  kill -0 "$pid" 2> /dev/null || return 0
  kids=$(pgrep -P "$pid" || true)
  kill "$pid" 2> /dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
  for k in $pid $kids; do kill -0 "$k" 2> /dev/null && kill -9 "$k" 2> /dev/null; done
  return 0
}
cleanup() {
  local rc=$? p
  set +e
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  [ "$PEERS_STARTED" = 1 ] && bash "$PEERS_DIR/peers.sh" stop
  for p in "${PG_DBS[@]}"; do pg_admin drop "$p" || warn "could not drop database $p"; done
  [ "$BENCH_KEEP_DB" = 1 ] || rm -rf "$BENCH_OUT/db"
  [ $rc = 0 ] || warn "run.sh failed (exit $rc); partial results in $BENCH_OUT"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. tools + peers --
need=()
command -v wrk > /dev/null || need+=(wrk)
command -v curl > /dev/null || need+=(curl)
command -v taskset > /dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi
if [ "$BENCH_PEERS" = 1 ]; then
  [ -x "$PEERS_SRC/setup.sh" ] || die "bench-peers not found at $PEERS_SRC (set KEYMINT_PEERS_SRC)"
  say "bench-peers setup.sh into $PEERS_DIR (fresh peer DBs)"
  PEERS_DIR=$PEERS_DIR bash "$PEERS_SRC/setup.sh" > "$BENCH_OUT/logs/peers-setup.log" 2>&1 \
    || { tail -20 "$BENCH_OUT/logs/peers-setup.log" >&2; die "peers setup failed"; }
  LUA_DIR=$PEERS_DIR/lua
else
  LUA_DIR=$PEERS_SRC/lua
fi
[ -f "$LUA_DIR/common.lua" ] || die "bench-peers lua scripts not found ($LUA_DIR)"

# ---------------------------------------------------------------- helpers ----------
port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
wait_http() {  # url pid
  for _ in $(seq 1 120); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2> /dev/null || return 1
    sleep 0.5
  done
  return 1
}
pg_admin() {  # create|drop NAME
  "$PY" - "$BENCH_PG_URL" "$1" "$2" << 'EOF'
import sys, psycopg
url, action, name = sys.argv[1:4]
assert name.replace("_", "").isalnum()
conninfo = url.replace("postgresql+psycopg://", "postgresql://").rstrip("/") + "/postgres"
with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as c:
    if action == "create":
        c.execute(f'CREATE DATABASE "{name}"')
    else:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
EOF
}
human() { case $1 in 0) echo 0 ;; *000000) echo "$(($1 / 1000000))M" ;; *000) echo "$(($1 / 1000))k" ;; *) echo "$1" ;; esac; }
json_get() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

LOGDIR=$BENCH_OUT/logs
WRK_CPU=${WRK_CPU-1}
export BENCH_LUA_DIR=$LUA_DIR BENCH_CONN_CLOSE

# ---------------------------------------------------------------- 2. keymint targets ---
# one target = one database + one keymint server; arrays indexed by target number
declare -a T_NAME=() T_DB=() T_N=() T_URL=() T_PORT=() T_PID=() T_DIR=() L_PORT=() L_PID=()
NEW_URL=
new_database() {  # db dir pgtag what -> NEW_URL: a fresh database, migrated, with a user, a
  # workspace and a key (DIR/key.json); KEYMINT_DATABASE_URL etc. stay exported for seeding
  local db=$1 dir=$2 pgname
  mkdir -p "$dir"
  case $db in
    sqlite) NEW_URL="sqlite:///$dir/keymint.sqlite3" ;;
    postgresql)
      pgname="keymint_bench_$$_$3"
      pg_admin create "$pgname" || die "cannot create PostgreSQL database at $BENCH_PG_URL"
      PG_DBS+=("$pgname"); NEW_URL="${BENCH_PG_URL%/}/$pgname" ;;
  esac
  say "[$4] migrate, user, workspace, key"
  export KEYMINT_DATABASE_URL=$NEW_URL AUTHLIB_INSECURE_TRANSPORT=1 KEYMINT_RATELIMIT_ENABLED=false
  (cd "$dir" && timeout 300 "$KEYMINT" db upgrade) > "$dir/setup.log" 2>&1 || { cat "$dir/setup.log" >&2; die "db upgrade failed"; }
  (cd "$dir" && "$KEYMINT" users create "$EMAIL" && "$KEYMINT" workspaces create "$SLUG" --owner "$EMAIL") >> "$dir/setup.log" 2>&1 \
    || { cat "$dir/setup.log" >&2; die "users/workspaces create failed"; }
  (cd "$dir" && "$KEYMINT" keys create --workspace "$SLUG" --user "$EMAIL" --name bench \
     --scope "introspect keys:read" --json) > "$dir/key.json" 2>> "$dir/setup.log" \
    || { cat "$dir/setup.log" >&2; die "keys create failed"; }
}
# phase 1 needs the targets, and phases 2 and 3 run on the first one
NEED_TARGETS=0
[ "$BENCH_MAIN$BENCH_SCALE$BENCH_SOAK" != 000 ] && NEED_TARGETS=1
t=0
for db in $([ "$NEED_TARGETS" = 1 ] && echo "$BENCH_DBS"); do
  for n in $BENCH_TOKENS; do
    name="keymint|$db|$n"; dir=$BENCH_OUT/db/$db-$n
    new_database "$db" "$dir" "$t" "$db N=$(human "$n")"; url=$NEW_URL
    cid=$(json_get "$dir/key.json" client_id)
    # revocation pool first (one slice per round), then the N live tokens
    pool=$((BENCH_REVOKE_POOL * BENCH_ROUNDS))
    if [ "$pool" -gt 0 ]; then
      "$PY" "$HERE/seed_tokens.py" --client-id "$cid" --count "$pool" --sample "$pool" \
        --sample-out "$dir/revoke_pool.txt" >> "$BENCH_OUT/seed.jsonl" || die "seeding the revocation pool failed"
      split -d -n "l/$BENCH_ROUNDS" "$dir/revoke_pool.txt" "$dir/revoke_pool."
    fi
    if [ "$n" -gt 0 ]; then
      say "[$db N=$(human "$n")] seeding $n live tokens"
      "$PY" "$HERE/seed_tokens.py" --client-id "$cid" --count "$n" --sample 2000 \
        --sample-out "$dir/seeded_sample.txt" | tee -a "$BENCH_OUT/seed.jsonl" >&2 || die "seeding failed"
    fi
    T_NAME[t]=$name; T_DB[t]=$db; T_N[t]=$n; T_URL[t]=$url; T_DIR[t]=$dir
    T_PORT[t]=$((BASE_PORT + t)); L_PORT[t]=$((BASE_PORT + 50 + t)); t=$((t + 1))
  done
done
unset KEYMINT_DATABASE_URL
NT=$t

BENCH_LIMITS=(KEYMINT_RATELIMIT_ENABLED=true)
for limit in IP CLIENT INTROSPECT FAILED_CLIENT FAILED_IP LEGACY_KEY; do
  BENCH_LIMITS+=("KEYMINT_RATELIMIT_$limit=100000000 per minute")
done
START_PID=
start_server() {  # dir url port workers pin(""=unpinned) logname [VAR=value...] -> START_PID
  # (also added to PIDS). Rate limiting stays on, as in production (per-process memory
  # storage), with every limit far above what 8 connections from one IP can reach: the
  # counting is measured, the 429s are not.
  local dir=$1 url=$2 port=$3 workers=$4 pin=$5 log=$6 pre=()
  shift 6
  port_free "$port" || die "127.0.0.1:$port is in use"
  [ -n "$pin" ] && pre=(taskset -c "$pin")
  (cd "$dir" && exec env KEYMINT_DATABASE_URL="$url" AUTHLIB_INSECURE_TRANSPORT=1 \
     "${BENCH_LIMITS[@]}" "$@" "${pre[@]}" "$KEYMINT" serve --bind "127.0.0.1:$port" \
     --workers "$workers") > "$BENCH_OUT/run/$log.log" 2>&1 &
  START_PID=$!; PIDS+=("$START_PID")
}
start_keymint() {  # idx port workers pin(""=unpinned) logname -> START_PID (also added to PIDS)
  start_server "${T_DIR[$1]}" "${T_URL[$1]}" "$2" "$3" "$4" "$5"
}

if [ "$BENCH_MAIN" = 1 ]; then
  say "starting $NT keymint server(s), $NT lean floor(s), floor$([ "$BENCH_PEERS" = 1 ] && echo ', peers') on CPU 0"
  for ((i = 0; i < NT; i++)); do
    start_keymint "$i" "${T_PORT[i]}" 1 0 "keymint-$i"; T_PID[i]=$START_PID
    # the lean floor reads this target's database, served like the floor below
    port_free "${L_PORT[i]}" || die "127.0.0.1:${L_PORT[i]} is in use"
    (cd "$BENCH_OUT/run" && exec env KEYMINT_DATABASE_URL="${T_URL[i]}" taskset -c 0 "$PY" \
       "$HERE/serve_floor.py" --target lean_app:app --bind "127.0.0.1:${L_PORT[i]}" --workers 1) \
      > "$BENCH_OUT/run/lean-$i.log" 2>&1 &
    L_PID[i]=$!; PIDS+=("${L_PID[i]}")
  done
  FLOOR_PORT=$((BASE_PORT + 90))
  port_free "$FLOOR_PORT" || die "127.0.0.1:$FLOOR_PORT is in use"
  (cd "$BENCH_OUT/run" && exec taskset -c 0 "$PY" "$HERE/serve_floor.py" --bind "127.0.0.1:$FLOOR_PORT" --workers 1) \
    > "$BENCH_OUT/run/floor.log" 2>&1 &
  FLOOR_PID=$!; PIDS+=("$FLOOR_PID")
  if [ "$BENCH_PEERS" = 1 ]; then
    PEERS_STARTED=1
    bash "$PEERS_DIR/peers.sh" start 1 0 > "$BENCH_OUT/logs/peers-start.log" 2>&1 \
      || { cat "$BENCH_OUT/logs/peers-start.log" >&2; die "peers did not start"; }
  fi
  for ((i = 0; i < NT; i++)); do
    wait_http "http://127.0.0.1:${T_PORT[i]}/healthz" "${T_PID[i]}" \
      || { tail -20 "$BENCH_OUT/run/keymint-$i.log" >&2; die "keymint ${T_NAME[i]} did not start"; }
    wait_http "http://127.0.0.1:${L_PORT[i]}/oauth/introspect" "${L_PID[i]}" \
      || { tail -20 "$BENCH_OUT/run/lean-$i.log" >&2; die "the lean floor of ${T_NAME[i]} did not start"; }
  done
  wait_http "http://127.0.0.1:$FLOOR_PORT/floor" "$FLOOR_PID" \
    || { tail -20 "$BENCH_OUT/run/floor.log" >&2; die "the floor did not start"; }
fi

# per target: the key's secret; one garbage token for all (right shape, bad checksum)
for ((i = 0; i < NT; i++)); do json_get "${T_DIR[i]}/key.json" client_secret > "${T_DIR[i]}/secret"; done
GARBAGE=$("$PY" -c '
import sys; sys.path.insert(0, sys.argv[1])
from app import credentials as c
t = c.new_access_token(); bad = t[:-6] + ("AAAAAA" if t[-6:] != "AAAAAA" else "BBBBBB")
assert not c.is_access_token(bad) and bad.startswith("at_"); print(bad)' "$REPO")

rss_snapshot() {  # phase tag
  for ((i = 0; i < NT; i++)); do
    echo "$1,${T_NAME[i]},$(rss_kb "${T_PID[i]}")"
    echo "$1,lean|${T_DB[i]}|${T_N[i]},$(rss_kb "${L_PID[i]}")"
  done >> "$BENCH_OUT/rss.csv"
  echo "$1,floor,$(rss_kb "$FLOOR_PID")" >> "$BENCH_OUT/rss.csv"
}
if [ "$BENCH_MAIN" = 1 ]; then
  echo "phase,label,rss_kb" > "$BENCH_OUT/rss.csv"
  rss_snapshot start
fi

# ---------------------------------------------------------------- meta -------------
"$PY" - "$BENCH_OUT/meta.json" "$REPO" << EOF
import json, os, platform, sqlite3, subprocess, sys, datetime
from importlib import metadata
out, repo = sys.argv[1:3]
def run(*cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception: return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
vers = {}
for p in ("Flask", "Werkzeug", "Authlib", "SQLAlchemy", "Flask-SQLAlchemy", "psycopg", "granian"):
    try: vers[p] = metadata.version(p)
    except metadata.PackageNotFoundError: pass
vers["python"] = platform.python_version(); vers["sqlite"] = sqlite3.sqlite_version
vers["wrk"] = run("dpkg-query", "-W", "-f=\${Version}", "wrk") or "?"
vers["node"] = run("node", "--version")
try:
    vers["oidc-provider"] = json.load(open(os.path.join(os.environ["PEERS_DIR"], "oidc/node_modules/oidc-provider/package.json")))["version"]
except Exception: pass
sys.path.insert(0, repo)
try:
    import app.runtime.server as s
    # what app.runtime.server hands Granian; the log config is keymint's JSON one, named not dumped
    settings = {k: v if isinstance(v, (bool, int)) else str(getattr(v, "value", v))
                for k, v in s.GRANIAN_SETTINGS.items()}
    settings["log_dictconfig"] = "app.runtime.server.LOG_CONFIG"
    server = {"GRANIAN_SETTINGS": repr(settings)}
except Exception as exc:
    server = {"error": repr(exc)}
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
    "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "loadavg_start": open("/proc/loadavg").read().split()[:3],
    "git_commit": run("git", "-C", repo, "rev-parse", "--short", "HEAD"),
    "versions": vers, "server_settings": server,
    "settings": {
        "dbs": "$BENCH_DBS", "tokens": "$BENCH_TOKENS", "duration_s": $BENCH_DURATION,
        "rounds": $BENCH_ROUNDS, "conns": $BENCH_CONNS, "wrk_threads": 1, "server_cpu": "0",
        "wrk_cpu": "${WRK_CPU:-any}", "conn_close": $BENCH_CONN_CLOSE, "keymint_workers": 1,
        "revoke_pool_per_round": $BENCH_REVOKE_POOL, "pg": "${BENCH_PG_URL%%@*}@...",
        "peers": $BENCH_PEERS, "scale": $BENCH_SCALE, "soak": $BENCH_SOAK,
        "soak_requests": $BENCH_SOAK_REQUESTS, "soak_chunk_s": $BENCH_SOAK_CHUNK,
        "main": $BENCH_MAIN, "audit": $BENCH_AUDIT, "sealer_cpu": "${BENCH_SEALER_CPU:-any}"},
}, open(out, "w"), indent=1)
EOF

# ---------------------------------------------------------------- phase 1 ----------
# token + introspection, the same way for keymint, the floor and the peers: bench-peers'
# token.lua / introspect.lua, a fresh token introspected (checked active first)
oauth_pair() {  # label base token_path introspect_path(- = none) cid secret pid [token_expect]
  local label=$1 base=$2 tpath=$3 ipath=$4 cid=$5 secret=$6 pid=$7 texp=${8:-access_token} basic tok
  basic=$(printf '%s:%s' "$cid" "$secret" | base64 -w0)
  BENCH_BASIC=$basic BENCH_SCOPE="" BENCH_EXPECT=$texp \
    run_wrk "$label" token "$LUA_DIR/token.lua" "$base$tpath" "$pid" || true
  [ "$ipath" = - ] && return 0
  tok=$(get_token "$base" "$tpath" "$cid" "$secret") || { warn "$label: no token to introspect"; return 0; }
  curl -sS --max-time 30 -u "$cid:$secret" -d "token=$tok" "$base$ipath" \
    | python3 -c 'import sys, json; d = json.load(sys.stdin); assert d.get("active") is True, d' \
    || { warn "$label: introspection smoke test failed"; return 0; }
  BENCH_BASIC=$basic BENCH_TOKEN=$tok BENCH_EXPECT='"active"%s*:%s*true' \
    run_wrk "$label" introspect "$LUA_DIR/introspect.lua" "$base$ipath" "$pid" || true
}
km_tests() {  # idx round -> every keymint test against target idx
  local i=$1 r=$2 base="http://127.0.0.1:${T_PORT[$1]}" label=${T_NAME[$1]} d=${T_DIR[$1]}
  local pid=${T_PID[$1]} cid secret basic bearer slice
  cid=$(json_get "$d/key.json" client_id); secret=$(cat "$d/secret")
  basic=$(printf '%s:%s' "$cid" "$secret" | base64 -w0)
  oauth_pair "$label" "$base" /oauth/token /oauth/introspect "$cid" "$secret" "$pid"
  BENCH_BASIC=$basic BENCH_BODY="token=$GARBAGE&token_type_hint=access_token" \
    BENCH_EXPECT='^{"active": ?false}' \
    run_wrk "$label" introspect_garbage "$HERE/lua/form_post.lua" "$base/oauth/introspect" "$pid" || true
  BENCH_BASIC=$basic BENCH_BODY="token=$GARBAGE&token_type_hint=access_token" BENCH_EXPECT="" \
    run_wrk "$label" revoke_garbage "$HERE/lua/form_post.lua" "$base/oauth/revoke" "$pid" || true
  slice=$(printf '%s/revoke_pool.%02d' "$d" $((r - 1)))
  if [ -s "$slice" ]; then
    BENCH_BASIC=$basic BENCH_TOKEN_FILE=$slice BENCH_ORDER=seq BENCH_EXPECT="" \
      run_wrk "$label" revoke_fresh "$HERE/lua/token_file_post.lua" "$base/oauth/revoke" "$pid" || true
    echo "$label,$r,$(wc -l < "$slice")" >> "$BENCH_OUT/revoke_pool.csv"
  fi
  if bearer=$(get_token "$base" /oauth/token "$cid" "$secret"); then
    BENCH_TOKEN=$bearer BENCH_EXPECT='"workspace"' \
      run_wrk "$label" me "$HERE/lua/bearer_get.lua" "$base/api/v1/me" "$pid" || true
  else
    warn "no bearer token for $label /me"
  fi
  if [ -s "$d/seeded_sample.txt" ]; then
    BENCH_BASIC=$basic BENCH_TOKEN_FILE=$d/seeded_sample.txt BENCH_ORDER=random \
      BENCH_EXPECT='"active"%s*:%s*true' \
      run_wrk "$label" introspect_seeded "$HERE/lua/token_file_post.lua" "$base/oauth/introspect" "$pid" || true
  fi
}
lean_tests() {  # idx -> the introspect test against target idx's lean floor, with a token
  # issued by that target's keymint (checked active through the lean floor first)
  local i=$1 d=${T_DIR[$1]} label="lean|${T_DB[$1]}|${T_N[$1]}" base="http://127.0.0.1:${L_PORT[$1]}"
  local cid secret tok
  cid=$(json_get "$d/key.json" client_id); secret=$(cat "$d/secret")
  tok=$(get_token "http://127.0.0.1:${T_PORT[i]}" /oauth/token "$cid" "$secret") \
    || { warn "$label: no token from ${T_NAME[i]}"; return 0; }
  curl -sS --max-time 30 -u "$cid:$secret" -d "token=$tok" "$base/oauth/introspect" \
    | python3 -c 'import sys, json; d = json.load(sys.stdin); assert d.get("active") is True, d' \
    || { warn "$label: introspection smoke test failed"; return 0; }
  BENCH_BASIC=$(printf '%s:%s' "$cid" "$secret" | base64 -w0) BENCH_TOKEN=$tok \
    BENCH_EXPECT='"active"%s*:%s*true' \
    run_wrk "$label" introspect "$LUA_DIR/introspect.lua" "$base/oauth/introspect" "${L_PID[i]}" || true
}
floor_tests() {
  oauth_pair floor "http://127.0.0.1:$FLOOR_PORT" /floor /floor x y "$FLOOR_PID"
}
peer_pid() { cat "$PEERS_DIR/run/$1.pid" 2> /dev/null || true; }
peer_tests() {  # name
  case $1 in
    oidc)    oauth_pair oidc-provider http://127.0.0.1:8003 /token /token/introspection bench-client "$PEER_SECRET" "$(peer_pid oidc)" ;;
    authlib) oauth_pair authlib-naive http://127.0.0.1:8004 /oauth/token /oauth/introspect bench-client "$PEER_SECRET" "$(peer_pid authlib)" ;;
    hello)   oauth_pair hello http://127.0.0.1:8001 /hello - x y "$(peer_pid hello)" hello ;;
  esac
}

if [ "$BENCH_MAIN" = 1 ]; then
  items=()
  for ((i = 0; i < NT; i++)); do items+=("km:$i"); done
  for ((i = 0; i < NT; i++)); do items+=("lean:$i"); done
  items+=(floor)
  [ "$BENCH_PEERS" = 1 ] && items+=(peer:oidc peer:authlib peer:hello)
  echo "label,round,pool" > "$BENCH_OUT/revoke_pool.csv"
  for r in $(seq 1 "$BENCH_ROUNDS"); do
    order=("${items[@]}")
    [ $((r % 2)) = 0 ] && mapfile -t order < <(printf '%s\n' "${items[@]}" | tac)
    say "phase 1, round $r/$BENCH_ROUNDS: ${order[*]}"
    for it in "${order[@]}"; do
      case $it in
        km:*) km_tests "${it#km:}" "$r" ;;
        lean:*) lean_tests "${it#lean:}" ;;
        floor) floor_tests ;;
        peer:*) peer_tests "${it#peer:}" ;;
      esac
    done
  done
  rss_snapshot end_phase1
  for ((i = 0; i < NT; i++)); do stop_pid "${T_PID[i]}"; stop_pid "${L_PID[i]}"; done
  stop_pid "$FLOOR_PID"
  if [ "$PEERS_STARTED" = 1 ]; then bash "$PEERS_DIR/peers.sh" stop; PEERS_STARTED=0; fi
fi

# ---------------------------------------------------------------- phase 2: scaling --
# keymint on the first target's database (the first DB in BENCH_DBS, first N), 1 worker vs
# 2 workers, nothing pinned (wrk included): does a second core give a second worker's worth?
if [ "$BENCH_SCALE" = 1 ] && [ "$NT" -gt 0 ]; then
  say "phase 2: 1 vs 2 workers, unpinned, on ${T_NAME[0]}"
  p1=$((BASE_PORT + 91)); p2=$((BASE_PORT + 92))
  start_keymint 0 "$p1" 1 "" scale-1w; s1=$START_PID
  start_keymint 0 "$p2" 2 "" scale-2w; s2=$START_PID
  wait_http "http://127.0.0.1:$p1/healthz" "$s1" || die "scale 1w did not start"
  wait_http "http://127.0.0.1:$p2/healthz" "$s2" || die "scale 2w did not start"
  cid=$(json_get "${T_DIR[0]}/key.json" client_id); secret=$(cat "${T_DIR[0]}/secret")
  for r in $(seq 1 "$BENCH_ROUNDS"); do
    pair=("1w $p1 $s1" "2w $p2 $s2"); [ $((r % 2)) = 0 ] && pair=("2w $p2 $s2" "1w $p1 $s1")
    for x in "${pair[@]}"; do
      set -- $x
      WRK_CPU="" oauth_pair "scale|$1" "http://127.0.0.1:$2" /oauth/token /oauth/introspect "$cid" "$secret" "$3"
    done
  done
  stop_pid "$s1"; stop_pid "$s2"
fi

# ---------------------------------------------------------------- phase 3: soak -----
# one keymint worker, pinned; introspection and issuance alternate in wrk chunks until
# BENCH_SOAK_REQUESTS requests are served; RSS after the first chunk (warm) vs at the end.
if [ "$BENCH_SOAK" = 1 ] && [ "$NT" -gt 0 ]; then
  say "phase 3: soak, $BENCH_SOAK_REQUESTS requests on ${T_NAME[0]}"
  ps_=$((BASE_PORT + 93))
  start_keymint 0 "$ps_" 1 0 soak; sp=$START_PID
  wait_http "http://127.0.0.1:$ps_/healthz" "$sp" || die "soak server did not start"
  cid=$(json_get "${T_DIR[0]}/key.json" client_id); secret=$(cat "${T_DIR[0]}/secret")
  basic=$(printf '%s:%s' "$cid" "$secret" | base64 -w0)
  tok=$(curl -sS -u "$cid:$secret" -d grant_type=client_credentials "http://127.0.0.1:$ps_/oauth/token" \
    | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
  echo "chunk,requests_total,rss_kb,elapsed_s" > "$BENCH_OUT/soak.csv"
  total=0; chunk=0; t0=$(date +%s)
  echo "0,0,$(rss_kb "$sp"),0" >> "$BENCH_OUT/soak.csv"
  while [ "$total" -lt "$BENCH_SOAK_REQUESTS" ]; do
    chunk=$((chunk + 1))
    if [ $((chunk % 4)) = 0 ]; then
      log=$BENCH_OUT/logs/soak_$chunk.log
      BENCH_BASIC=$basic BENCH_EXPECT=access_token BENCH_SCOPE="" \
        taskset -c 1 wrk -t1 -c"$BENCH_CONNS" -d"${BENCH_SOAK_CHUNK}s" --timeout 10s -s "$LUA_DIR/token.lua" \
        "http://127.0.0.1:$ps_/oauth/token" > "$log" 2>&1 || true
    else
      log=$BENCH_OUT/logs/soak_$chunk.log
      BENCH_BASIC=$basic BENCH_TOKEN=$tok BENCH_EXPECT='"active"%s*:%s*true' \
        taskset -c 1 wrk -t1 -c"$BENCH_CONNS" -d"${BENCH_SOAK_CHUNK}s" --timeout 10s -s "$LUA_DIR/introspect.lua" \
        "http://127.0.0.1:$ps_/oauth/introspect" > "$log" 2>&1 || true
    fi
    n=$(sed -n 's/^RESULT requests=\([0-9]*\).*/\1/p' "$log"); [ -n "$n" ] || { warn "soak chunk $chunk: no RESULT"; break; }
    total=$((total + n))
    # the token may expire during a long soak (KEYMINT_ACCESS_TOKEN_TTL): refresh it
    tok=$(curl -sS -u "$cid:$secret" -d grant_type=client_credentials "http://127.0.0.1:$ps_/oauth/token" \
      | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
    echo "$chunk,$total,$(rss_kb "$sp"),$(($(date +%s) - t0))" >> "$BENCH_OUT/soak.csv"
    say "soak: $total requests, rss $(rss_kb "$sp") kB"
  done
  stop_pid "$sp"
fi

# ---------------------------------------------------------------- phase 4: auditing --
# issuance with KEYMINT_AUDIT_ENABLED=false vs true + a sealer loop, on a fresh database per
# DB; every other condition as in phase 1 (server on CPU 0, wrk on CPU 1, token.lua)
SEALER_PID=
sealer_start() {  # url dir tag -> SEALER_PID; the loop of docs/audit.md, with a stop file
  local url=$1 dir=$2 tag=$3 pre=()
  [ -n "$BENCH_SEALER_CPU" ] && pre=(taskset -c "$BENCH_SEALER_CPU")
  rm -f "$dir/sealer.stop" "$dir/sealer.times"
  : > "$dir/sealer.log"
  # bash's `time` gives each `keymint audit seal`'s user/system CPU and wall time
  (cd "$dir" && exec env KEYMINT_DATABASE_URL="$url" KEYMINT="$KEYMINT" DIR="$dir" "${pre[@]}" bash -c '
    TIMEFORMAT="%U %S %R"
    while [ ! -e "$DIR/sealer.stop" ]; do
      { time timeout 120 "$KEYMINT" audit seal >> "$DIR/sealer.log" 2>&1; } 2>> "$DIR/sealer.times"
      sleep 1
    done') > "$BENCH_OUT/logs/sealer-$tag.log" 2>&1 &
  SEALER_PID=$!; PIDS+=("$SEALER_PID")
}
sealer_stop() {  # dir -> lets the running seal finish (30 s at most), then stops the loop
  touch "$1/sealer.stop"
  for _ in $(seq 1 120); do kill -0 "$SEALER_PID" 2> /dev/null || break; sleep 0.25; done
  stop_pid "$SEALER_PID"
}
if [ "$BENCH_AUDIT" = 1 ]; then
  declare -a A_DB=() A_DIR=() A_URL=() A_CID=() A_SECRET=() A_OFF=() A_ON=() A_OFFPID=() A_ONPID=()
  echo "db,round,invocations,events_sealed,cpu_s,wall_s" > "$BENCH_OUT/sealer.csv"
  : > "$BENCH_OUT/audit_verify.jsonl"
  k=0
  for db in $BENCH_DBS; do
    dir=$BENCH_OUT/db/audit-$db
    new_database "$db" "$dir" "audit_$k" "$db, auditing phase"
    A_DB[k]=$db; A_DIR[k]=$dir; A_URL[k]=$NEW_URL
    A_CID[k]=$(json_get "$dir/key.json" client_id); A_SECRET[k]=$(json_get "$dir/key.json" client_secret)
    A_OFF[k]=$((BASE_PORT + 94 + 2 * k)); A_ON[k]=$((BASE_PORT + 95 + 2 * k))
    start_server "$dir" "$NEW_URL" "${A_OFF[k]}" 1 0 "audit-$db-off" KEYMINT_AUDIT_ENABLED=false
    A_OFFPID[k]=$START_PID
    start_server "$dir" "$NEW_URL" "${A_ON[k]}" 1 0 "audit-$db-on" KEYMINT_AUDIT_ENABLED=true
    A_ONPID[k]=$START_PID
    k=$((k + 1))
  done
  unset KEYMINT_DATABASE_URL
  for ((k = 0; k < ${#A_DB[@]}; k++)); do
    for x in "off ${A_OFF[k]} ${A_OFFPID[k]}" "on ${A_ON[k]} ${A_ONPID[k]}"; do
      set -- $x
      wait_http "http://127.0.0.1:$2/healthz" "$3" \
        || { tail -20 "$BENCH_OUT/run/audit-${A_DB[k]}-$1.log" >&2; die "audit $1 server (${A_DB[k]}) did not start"; }
      get_token "http://127.0.0.1:$2" /oauth/token "${A_CID[k]}" "${A_SECRET[k]}" > /dev/null \
        || die "audit $1 server (${A_DB[k]}) issues no token"
    done
  done
  for r in $(seq 1 "$BENCH_ROUNDS"); do
    for ((k = 0; k < ${#A_DB[@]}; k++)); do
      db=${A_DB[k]}; dir=${A_DIR[k]}
      basic=$(printf '%s:%s' "${A_CID[k]}" "${A_SECRET[k]}" | base64 -w0)
      pair=(off on); [ $((r % 2)) = 0 ] && pair=(on off)
      say "phase 4 (auditing), round $r/$BENCH_ROUNDS, $db: ${pair[*]}"
      for mode in "${pair[@]}"; do
        if [ "$mode" = off ]; then
          BENCH_BASIC=$basic BENCH_SCOPE="" BENCH_EXPECT=access_token run_wrk "audit|$db|off" token \
            "$LUA_DIR/token.lua" "http://127.0.0.1:${A_OFF[k]}/oauth/token" "${A_OFFPID[k]}" || true
        else
          sealer_start "${A_URL[k]}" "$dir" "$db-$r"
          BENCH_BASIC=$basic BENCH_SCOPE="" BENCH_EXPECT=access_token run_wrk "audit|$db|on" token \
            "$LUA_DIR/token.lua" "http://127.0.0.1:${A_ON[k]}/oauth/token" "${A_ONPID[k]}" || true
          sealer_stop "$dir"
          ev=$(sed -n 's/^sealed \([0-9]*\) event.*/\1/p' "$dir/sealer.log" | awk '{s += $1} END {print s + 0}')
          awk -v db="$db" -v r="$r" -v ev="$ev" '{n++; c += $1 + $2; w += $3}
            END {printf "%s,%s,%d,%d,%.2f,%.2f\n", db, r, n, ev, c, w}' "$dir/sealer.times" >> "$BENCH_OUT/sealer.csv"
          say "sealer: $(tail -1 "$BENCH_OUT/sealer.csv") (db,round,invocations,events,cpu_s,wall_s)"
        fi
      done
    done
  done
  for ((k = 0; k < ${#A_DB[@]}; k++)); do
    stop_pid "${A_OFFPID[k]}"; stop_pid "${A_ONPID[k]}"
    db=${A_DB[k]}; dir=${A_DIR[k]}
    say "[$db] keymint audit seal, then keymint audit verify"
    (cd "$dir" && KEYMINT_DATABASE_URL=${A_URL[k]} timeout 300 "$KEYMINT" audit seal) >> "$dir/final-seal.log" 2>&1 \
      || { cat "$dir/final-seal.log" >&2; warn "[$db] the final audit seal failed"; }
    vrc=0
    (cd "$dir" && KEYMINT_DATABASE_URL=${A_URL[k]} timeout 300 "$KEYMINT" audit verify --json) > "$dir/verify.json" \
      2>> "$dir/final-seal.log" || vrc=$?
    "$PY" - "$dir/verify.json" "$db" "$vrc" "$(tail -1 "$dir/final-seal.log")" >> "$BENCH_OUT/audit_verify.jsonl" << 'EOF'
import json, sys
path, db, rc, seal = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    v = json.loads(open(path).read().strip().splitlines()[-1])
except Exception as exc:
    v = {"ok": False, "problem": f"no JSON from audit verify: {exc!r}"}
v.update(db=db, exit_status=rc, final_seal=seal)
print(json.dumps(v, sort_keys=True))
EOF
    say "[$db] verify: $(tail -1 "$BENCH_OUT/audit_verify.jsonl")"
  done
fi

# ---------------------------------------------------------------- report -----------
"$PY" - "$BENCH_OUT/meta.json" << 'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
doc_args=(); [ "$BENCH_DOC" != "-" ] && doc_args=(--doc "$BENCH_DOC")
"$PY" "$HERE/report.py" "$BENCH_OUT" "${doc_args[@]}" | tee "$BENCH_OUT/report.md"
say "results: $BENCH_OUT (results.csv, meta.json, report.md)$([ "$BENCH_DOC" != "-" ] && echo "; wrote $BENCH_DOC")"
