# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/wsgi_compare.sh (sourced, not run).
#
# run_wrk LABEL TEST LUA_SCRIPT URL [SERVER_PID]
#   one wrk run (1 thread, $BENCH_CONNS connections, $BENCH_DURATION s, pinned to $WRK_CPU
#   unless empty) with a bench-peers style lua script (common.lua checks status and body of
#   every response: BENCH_EXPECT), appended as one row to $RESULTS. The columns are
#   bench-peers/bench.sh's plus server_cpu_s: the CPU time (user+system) the server's whole
#   process tree used during the run, when SERVER_PID is given. On a shared machine the
#   server's CPU per request is far steadier than its req/s, which depends on how much
#   of CPU 0 other people's jobs left it.
# Needs: RESULTS, LOGDIR, BENCH_DURATION, BENCH_CONNS, WRK_CPU, BENCH_LUA_DIR (exported).

CSV_HEADER="time,label,test,conns,threads,wrk_cpu,duration_s,requests,rps,p50_ms,p90_ms,p99_ms,max_ms,ok,bad,err_connect,err_read,err_write,err_status,err_timeout,server_cpu_s"
CLK_TCK=$(getconf CLK_TCK)

tree_pids() {  # pid -> it and all its descendants, one per line
  local todo=("$1") p
  while [ ${#todo[@]} -gt 0 ]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    echo "$p"
    # shellcheck disable=SC2207
    todo+=($(pgrep -P "$p" || true))
  done
}

cpu_ticks() {  # pid -> utime+stime (clock ticks) summed over the process tree, threads included
  local total=0 p t
  for p in $(tree_pids "$1"); do
    # fields after the ")" of comm: state is $1, utime $12, stime $13
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2> /dev/null | awk '{print $12 + $13}')
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

rss_kb() {  # pid -> VmRSS (kB) summed over the process tree
  local total=0 p r
  for p in $(tree_pids "$1"); do
    r=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2> /dev/null || true)
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

run_wrk() {
  local label=$1 test=$2 script=$3 url=$4 spid=${5:-} log line ts pin=() c0=0 c1=0 cpu=""
  [ -n "${WRK_CPU:-}" ] && pin=(taskset -c "$WRK_CPU")
  [ -f "$RESULTS" ] || echo "$CSV_HEADER" > "$RESULTS"
  ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  log="$LOGDIR/$(echo "${label}_$test" | tr -c 'A-Za-z0-9_.-' _)_$(date +%s%N).log"
  [ -n "$spid" ] && c0=$(cpu_ticks "$spid")
  timeout $((BENCH_DURATION + 30)) "${pin[@]}" wrk -t1 -c"$BENCH_CONNS" -d"${BENCH_DURATION}s" \
    --timeout 10s -s "$script" "$url" > "$log" 2>&1 || true
  [ -n "$spid" ] && c1=$(cpu_ticks "$spid") && cpu=$(awk -v a="$c0" -v b="$c1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')
  line=$(grep '^RESULT ' "$log" || true)
  if [ -z "$line" ]; then echo "!! wrk produced no RESULT for $label $test, see $log" >&2; return 1; fi
  local requests=0 secs=0 rps=0 p50_ms=0 p90_ms=0 p99_ms=0 max_ms=0 ok=0 bad=0 err_connect=0 err_read=0 \
    err_write=0 err_status=0 err_timeout=0 kv
  for kv in ${line#RESULT }; do
    [[ $kv =~ ^([a-z0-9_]+)=([0-9.]+)$ ]] && printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
  done
  echo "$ts,$label,$test,$BENCH_CONNS,1,${WRK_CPU:-any},$BENCH_DURATION,$requests,$rps,$p50_ms,$p90_ms,$p99_ms,$max_ms,$ok,$bad,$err_connect,$err_read,$err_write,$err_status,$err_timeout,$cpu" >> "$RESULTS"
  local cpr="-"
  [ -n "$cpu" ] && [ "$requests" -gt 0 ] && cpr=$(awk -v c="$cpu" -v n="$requests" 'BEGIN {printf "%.3f", c * 1000 / n}')
  printf '%-30s %-19s %8s req/s  p50 %7s ms  p99 %7s ms  cpu/req %s ms  ok=%s bad=%s err=%s\n' "$label" "$test" \
    "$rps" "$p50_ms" "$p99_ms" "$cpr" "$ok" "$bad" $((err_connect + err_read + err_write + err_status + err_timeout)) >&2
}

get_token() {  # base_url token_path client_id secret -> access_token (fails if none)
  curl -sS --max-time 30 -u "$3:$4" -d grant_type=client_credentials "$1$2" \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])'
}
