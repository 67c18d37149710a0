#!/usr/bin/env bash
# test_status_page.sh - the status page (GET /) in a real browser.
#
#   test_status_page.sh SOCKBUSD SOCKBUS_BENCH OUTDIR
#
# Starts sockbusd with --http, loads it with sockbus-bench, runs headless
# Chromium against the page, and checks from the page's DOM that its
# figures move: #msgs-in-rate shows a non-zero rate, and more than one
# sample was drawn (body[data-samples]). Saves a screenshot as
# OUTDIR/status_page.png. Exits 77 (skipped) without /usr/bin/chromium.
set -euo pipefail

SOCKBUSD=$1
BENCH=$2
OUTDIR=$3
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  echo "SKIP: $CHROMIUM not found (Debian package chromium)"
  exit 77
fi

work=$(mktemp -d)
server_pid=
bench_pid=
cleanup() {
  # Only what this script started, by process id.
  [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$bench_pid" ] && wait "$bench_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- server log" >&2
  tail -n 20 "$work/server.log" >&2 || true
  exit 1
}

# Wait up to $2 seconds for file $1 to hold line pattern $3.
wait_line() {
  local file=$1 secs=$2 pattern=$3 i
  for ((i = 0; i < secs * 20; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# GET $1 from the http port, body only (bash's /dev/tcp: no curl needed).
http_get() {
  local body
  exec 3<>"/dev/tcp/127.0.0.1/$http_port"
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
    "$1" >&3
  body=$(timeout 5 cat <&3 | tr -d '\r' | sed '1,/^$/d')
  exec 3<&-
  printf '%s' "$body"
}

# The numeric value of a top-level field of a JSON object.
json_num() {
  sed -n "s/.*\"$2\":\([0-9][0-9.]*\).*/\1/p" <<<"$1"
}

"$SOCKBUSD" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  >"$work/ready" 2>"$work/server.log" &
server_pid=$!
wait_line "$work/ready" 10 '^sockbusd http on ' || fail "sockbusd did not start"
port=$(sed -n 's/^sockbusd listening on .*:\([0-9]*\)$/\1/p' "$work/ready")
http_port=$(sed -n 's/^sockbusd http on .*:\([0-9]*\)$/\1/p' "$work/ready")
echo "sockbusd on port $port, http on port $http_port"

# Load for longer than both browser runs take; stopped below once done.
"$BENCH" --server "127.0.0.1:$port" --pubs 2 --subs 3 --rate 2000 \
  --duration 60 --timeout 10 >"$work/bench.out" 2>&1 &
bench_pid=$!

# Wait until the server has seen publications before opening the page.
for ((i = 0; ; i++)); do
  stats=$(http_get /stats || true)
  in=$(json_num "$stats" msgs_in)
  [ -n "$in" ] && [ "$in" -gt 0 ] && break
  [ $i -lt 100 ] || fail "no publication reached the server: $stats"
  sleep 0.1
done

chrome() {
  timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d -p "$work")" "$@" 2>>"$work/chromium.log"
}

url="http://127.0.0.1:$http_port/"
chrome --virtual-time-budget=6000 --dump-dom "$url" >"$work/dom.html" ||
  fail "chromium --dump-dom failed (see $work/chromium.log)"

# The figures, as the page shows them.
attr() { # attr ID ATTRIBUTE
  grep -o "id=\"$1\"[^>]*" "$work/dom.html" |
    sed -n "s/.*$2=\"\([^\"]*\)\".*/\1/p" | head -n 1
}
samples=$(grep -o '<body[^>]*data-samples="[0-9]*"' "$work/dom.html" |
  sed 's/.*data-samples="\([0-9]*\)"/\1/')
rate_in=$(attr msgs-in-rate data-value)
rate_out=$(attr msgs-out-rate data-value)
conns=$(attr connections data-value)
state=$(attr status data-state)
echo "page: state=$state samples=$samples msgs-in-rate=$rate_in" \
  "msgs-out-rate=$rate_out connections=$conns"
[ "$state" = live ] || fail "page state '$state', want live"
[ -n "$samples" ] && [ "$samples" -gt 1 ] ||
  fail "samples '$samples', want more than 1"
awk -v r="$rate_in" 'BEGIN { exit !(r + 0 > 0) }' ||
  fail "msgs-in-rate '$rate_in', want > 0"
awk -v r="$rate_out" 'BEGIN { exit !(r + 0 > 0) }' ||
  fail "msgs-out-rate '$rate_out', want > 0"
[ -n "$conns" ] && [ "$conns" -ge 5 ] ||
  fail "connections '$conns', want at least 5 (2 publishers, 3 subscribers)"
rows=$(grep -o '<tbody id="top-conns-body">.*</tbody>' "$work/dom.html" |
  grep -o '<tr>' | wc -l)
[ "$rows" -ge 5 ] || fail "top connections table has $rows rows, want 5"

mkdir -p "$OUTDIR"
shot="$OUTDIR/status_page.png"
rm -f "$shot"
chrome --virtual-time-budget=12000 --window-size=1280,900 \
  --screenshot="$shot" "$url" >/dev/null ||
  fail "chromium --screenshot failed (see $work/chromium.log)"
[ -s "$shot" ] || fail "no screenshot at $shot"
echo "screenshot: $shot"

# The server stops cleanly with the page's polling behind it.
kill "$bench_pid"
wait "$bench_pid" 2>/dev/null || true
bench_pid=
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
[ "$status" -eq 0 ] || fail "sockbusd exited $status on SIGTERM"
echo "1 passed, 0 failed"
