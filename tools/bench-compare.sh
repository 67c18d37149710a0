#!/usr/bin/env bash
# bench-compare.sh - sockbus vs nats-server vs redis-server, one load tool.
#
#   tools/bench-compare.sh
#
# Builds sockbusd and sockbus-bench in Release, then for every scenario,
# server and run starts a fresh server on a free loopback port, runs
# sockbus-bench --json against it, stops the server, and finally prints
# the median of the runs per scenario and server as Markdown tables (also
# written to $OUT/summary.md, next to every run's JSON and the commands).
#
# Scenarios (sockbus-bench flags):
#   A  fan-in:    --pubs 4 --subs 1 --size 128 --msgs 1000000
#   B  fan-out:   --pubs 1 --subs 8 --size 128 --msgs 200000
#   C  latency:   --pubs 1 --subs 1 --size 128 --rate 20000 --msgs 200000
#   D  large:     --pubs 1 --subs 1 --size 16384 --msgs 50000
#   E  idle:      --pubs 1 --subs 8 --size 128 --rate 20000 --msgs 100000
#                 --conns 10000 (RSS per idle connection, paced broadcast)
#   E2 idle:      the same with --conns 9900 (fits sockbusd under a hard
#                 limit of 20000 descriptors: it uses two per client)
# "sockbus-drop" is sockbusd with --slow-policy drop, run for DROP_SCENARIOS
# to show what it delivers when it may drop for slow subscribers instead
# of disconnecting them.
#
# Environment: BUILD_DIR (build-rel), RUNS (3), SCENARIOS ("A B C D E E2"),
# SERVERS ("sockbus nats redis"), DROP_SCENARIOS ("A B"), OUT (a new
# directory under /tmp), NO_BUILD=1 to use the binaries as they are,
# QUIET_PCT (25) and QUIET_WAIT (120): before each run, wait up to
# QUIET_WAIT seconds for the rest of the machine to use at most QUIET_PCT
# percent of a core (on a shared machine, other work skews every figure).
#
# Every wait is bounded: builds and runs by timeout(1), server start and
# stop and the quiet wait by deadlines; a server that does not stop is
# killed.
set -euo pipefail

cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-rel}
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-"A B C D E E2"}
SERVERS=${SERVERS:-"sockbus nats redis"}
DROP_SCENARIOS=${DROP_SCENARIOS:-"A B"}
OUT=${OUT:-$(mktemp -d /tmp/sockbus-compare.XXXXXX)}
QUIET_PCT=${QUIET_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-120}
SOCKBUSD=$BUILD_DIR/server/sockbusd
BENCH=$BUILD_DIR/tools/sockbus-bench
SERVER_PID=

scenario_args() {
  case $1 in
  A) echo "--pubs 4 --subs 1 --size 128 --msgs 1000000" ;;
  B) echo "--pubs 1 --subs 8 --size 128 --msgs 200000" ;;
  C) echo "--pubs 1 --subs 1 --size 128 --rate 20000 --msgs 200000" ;;
  D) echo "--pubs 1 --subs 1 --size 16384 --msgs 50000" ;;
  E) echo "--pubs 1 --subs 8 --size 128 --rate 20000 --msgs 100000 --conns 10000" ;;
  E2) echo "--pubs 1 --subs 8 --size 128 --rate 20000 --msgs 100000 --conns 9900" ;;
  *) return 1 ;;
  esac
}

# sockbus-bench --timeout: bounds every wait of a run. The idle scenarios
# get less, as a server that cannot take a connection leaves it waiting.
scenario_timeout() {
  case $1 in
  E | E2) echo 20 ;;
  *) echo 60 ;;
  esac
}

need() {
  command -v "$1" >/dev/null || {
    echo "bench-compare: $1 not found" >&2
    exit 2
  }
}

build() {
  [ "${NO_BUILD:-}" = 1 ] && return 0
  timeout 900 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  timeout 900 cmake --build "$BUILD_DIR" -j "$(nproc)" \
    --target sockbusd sockbus-bench >/dev/null
}

machine() {
  echo "- nproc: $(nproc)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "- kernel: $(uname -sr)"
  echo "- nats-server: $(nats-server --version 2>&1 | head -1)"
  echo "- redis-server: $(redis-server --version | head -1)"
  echo "- sockbus: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- open-file limit (hard): $(ulimit -Hn)"
}

# A loopback port nobody listens on (the server binds it a moment later).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if [ -z "$(ss -Htan "sport = :$p")" ]; then
      echo "$p"
      return 0
    fi
  done
  echo "bench-compare: no free port found" >&2
  return 1
}

# Waits up to 10 s for `port` to be listening, while `pid` lives.
wait_listening() {
  local port=$1 pid=$2 deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ -n "$(ss -Htln "sport = :$port")" ] && return 0
    sleep 0.05
  done
  return 1
}

# Clock ticks every process has spent busy since boot (/proc/stat).
cpu_busy() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# Waits until the machine used at most QUIET_PCT % of a core over 2 s, or
# QUIET_WAIT seconds have passed. Prints the last figure it measured.
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) hz a b pct
  hz=$(getconf CLK_TCK)
  while :; do
    a=$(cpu_busy)
    sleep 2
    b=$(cpu_busy)
    pct=$(((b - a) * 100 / (2 * hz)))
    if [ "$pct" -le "$QUIET_PCT" ] || [ $SECONDS -ge $deadline ]; then
      echo "$pct"
      return 0
    fi
  done
}

# Starts server `kind` on `port`; sets SERVER_PID.
start_server() {
  local kind=$1 port=$2 log=$3
  case $kind in
  sockbus)
    "$SOCKBUSD" --listen "127.0.0.1:$port" --log-level warn >"$log" 2>&1 &
    ;;
  sockbus-drop)
    "$SOCKBUSD" --listen "127.0.0.1:$port" --log-level warn \
      --slow-policy drop >"$log" 2>&1 &
    ;;
  nats)
    nats-server -a 127.0.0.1 -p "$port" >"$log" 2>&1 &
    ;;
  redis)
    # maxclients: the default of 10000 cannot take scenario E's clients.
    redis-server --port "$port" --save '' --appendonly no \
      --maxclients 10100 >"$log" 2>&1 &
    ;;
  esac
  SERVER_PID=$!
  if ! wait_listening "$port" "$SERVER_PID"; then
    echo "bench-compare: $kind did not start (log $log)" >&2
    stop_server
    return 1
  fi
}

# SIGTERM, up to 10 s, then SIGKILL.
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$SERVER_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

proto_of() {
  case $1 in
  sockbus*) echo sockbus ;;
  *) echo "$1" ;;
  esac
}

# One run: fresh server, one bench, server stopped. Writes NAME.json.
run_one() {
  local scen=$1 kind=$2 run=$3 port name t quiet
  name="$OUT/$scen-$kind-$run"
  quiet=$(wait_quiet)
  port=$(free_port)
  start_server "$kind" "$port" "$name.server.log" || return 0
  t=$(scenario_timeout "$scen")
  local args cmd
  read -ra args <<<"$(scenario_args "$scen")"
  cmd=("$BENCH" --proto "$(proto_of "$kind")" --server "127.0.0.1:$port"
    "${args[@]}" --timeout "$t" --server-pid "$SERVER_PID" --json)
  echo "$scen $kind run $run (machine busy ${quiet}% of a core before): ${cmd[*]}" |
    tee -a "$OUT/commands.txt" >&2
  timeout $((t * 4 + 120)) "${cmd[@]}" >"$name.json" 2>"$name.err" || true
  stop_server
}

# The median of the numbers on stdin ("-" when none).
median() {
  sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

# median of jq expression `expr` over the runs of scenario/kind.
med() {
  local scen=$1 kind=$2 expr=$3
  for f in "$OUT/$scen-$kind-"[0-9]*.json; do
    [ -s "$f" ] && jq -r "($expr) // empty" "$f" 2>/dev/null
  done | median
}

completes() {
  local n=0 all=0
  for f in "$OUT/$1-$2-"[0-9]*.json; do
    all=$((all + 1))
    [ "$(jq -r '.complete' "$f" 2>/dev/null)" = true ] && n=$((n + 1))
  done
  echo "$n/$all"
}

fmt() { # number, decimals
  [ "$1" = - ] && echo - && return
  LC_ALL=C printf "%.${2}f" "$1"
}

kinds_of() {
  local k
  for k in $SERVERS; do echo "$k"; done
  case " $DROP_SCENARIOS " in *" $1 "*) echo sockbus-drop ;; esac
}

table() {
  echo "| scen. | server | complete | pub msgs/s | delivered msgs/s | delivered MB/s | p50 us | p99 us | p99.9 us | max us | lost | server CPU % | bench CPU % | other CPU % | RSS KiB/conn |"
  echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local s k
  for s in $SCENARIOS; do
    for k in $(kinds_of "$s"); do
      echo "| $s | $k | $(completes "$s" "$k") | $(fmt "$(med "$s" "$k" .pub_rate)" 0) |" \
        "$(fmt "$(med "$s" "$k" .sub_rate)" 0) | $(fmt "$(med "$s" "$k" .sub_mbps)" 1) |" \
        "$(fmt "$(med "$s" "$k" .latency_us.p50)" 0) | $(fmt "$(med "$s" "$k" .latency_us.p99)" 0) |" \
        "$(fmt "$(med "$s" "$k" .latency_us.p999)" 0) | $(fmt "$(med "$s" "$k" .latency_us.max)" 0) |" \
        "$(fmt "$(med "$s" "$k" .lost)" 0) | $(fmt "$(med "$s" "$k" .cpu_pct.server)" 0) |" \
        "$(fmt "$(med "$s" "$k" .cpu_pct.bench)" 0) |" \
        "$(fmt "$(med "$s" "$k" '[.cpu_pct.machine - .cpu_pct.server - .cpu_pct.bench, 0] | max')" 0) |" \
        "$(fmt "$(med "$s" "$k" .server_rss_kib.per_conn)" 1) |"
    done
  done
}

ratio() { # a b
  if [ "$1" = - ] || [ "$2" = - ]; then
    echo -
  else
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
  fi
}

ratios() {
  echo "| scen. | pub msgs/s | delivered msgs/s | p50 | p99 | p99.9 | RSS/conn |"
  echo "|---|--:|--:|--:|--:|--:|--:|"
  local s e row
  for s in $SCENARIOS; do
    row="| $s"
    for e in .pub_rate .sub_rate .latency_us.p50 .latency_us.p99 \
      .latency_us.p999 .server_rss_kib.per_conn; do
      row="$row | $(ratio "$(med "$s" sockbus "$e")" "$(med "$s" nats "$e")")"
    done
    echo "$row |"
  done
}

errors() {
  local f
  for f in "$OUT"/*.err; do
    [ -s "$f" ] || continue
    echo "- $(basename "$f" .err): $(sort -u "$f" | head -3 | tr '\n' ' ')"
  done
}

main() {
  need jq
  need ss
  need nats-server
  need redis-server
  build
  mkdir -p "$OUT"
  echo "bench-compare: results in $OUT" >&2
  machine >"$OUT/machine.md" # now: what was built, not what is there later
  local s k r
  for s in $SCENARIOS; do
    scenario_args "$s" >/dev/null || {
      echo "bench-compare: unknown scenario $s" >&2
      exit 2
    }
    for r in $(seq 1 "$RUNS"); do
      for k in $(kinds_of "$s"); do
        run_one "$s" "$k" "$r"
      done
    done
  done
  {
    echo "## Machine"
    cat "$OUT/machine.md"
    echo
    echo "## Medians of $RUNS runs"
    table
    echo
    echo "## sockbus / nats-server (median / median; above 1 is more for sockbus)"
    ratios
    echo
    echo "## Errors reported by the runs"
    errors
  } | tee "$OUT/summary.md"
}

main "$@"
