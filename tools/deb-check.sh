#!/usr/bin/env bash
# deb-check.sh - CI for the Debian package, as root on a Debian machine:
#
#   1. build the .deb with cpack in a fresh Release tree (BUILD_DIR, default
#      build-deb) configured for /usr;
#   2. install it with apt-get and check what it installed: the tools run,
#      the man pages, the conffile, the system user, the systemd unit
#      (systemd-analyze verify, where present), and sockbusd starting from
#      the installed configuration;
#   3. build tools/embed-example.c against the installed files only, through
#      pkg-config, linked to libsockbus.so and to libsockbus.a, and run each:
#      it must print a message published to it over TCP;
#   4. remove the package (the conffile stays), then purge it.
#
# Every wait is bounded. Exits non-zero on the first failure, and removes
# the package on the way out if it is still installed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

BUILD_DIR=${BUILD_DIR:-build-deb}
WAIT_S=10 # bound of each wait for a process
APT=(timeout 300 apt-get -y -q -o DPkg::Lock::Timeout=60)
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n=== %s (%ds)\n' "$*" "$(($(date +%s) - start))"; }
fail() {
  echo "deb-check: FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs the package)"
command -v cmake >/dev/null || fail "no cmake: run tools/dev.sh deps first"

# cpack computes Depends with dpkg-shlibdeps (dpkg-dev) and finds the ELF
# files to give it with file(1).
missing=()
for p in dpkg-dev file; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deb-check: installing ${missing[*]}"
  timeout 300 apt-get update -q
  "${APT[@]}" install "${missing[@]}"
fi

tmp=$(mktemp -d /tmp/deb-check.XXXXXX)
chmod 755 "$tmp" # apt's _apt user reads the .deb from here
running= # the pid of the server or example being checked, if any
installed=no
cleanup() {
  local rc=$?
  if [ -n "$running" ]; then
    kill -KILL "$running" 2>/dev/null || true
  fi
  if [ "$installed" = yes ]; then
    echo "deb-check: removing the package after a failure" >&2
    "${APT[@]}" purge sockbus >/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# wait_for FILE REGEX: wait up to WAIT_S for a line of FILE to match.
wait_for() {
  local deadline=$((SECONDS + WAIT_S))
  until grep -Eq "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# stop: SIGTERM to $running, then wait up to WAIT_S for it to exit.
# Returns its exit status; fails the check if it does not exit.
stop() {
  local pid=$running deadline=$((SECONDS + WAIT_S))
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] ||
      fail "pid $pid still running ${WAIT_S}s after SIGTERM"
    sleep 0.1
  done
  running=
  wait "$pid"
}

step "build the .deb in $BUILD_DIR (Release, prefix /usr)"
rm -rf "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX=/usr -DSOCKBUS_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" >/dev/null
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
debs=("$BUILD_DIR"/sockbus_*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  fail "expected one sockbus_*.deb in $BUILD_DIR"
fi
cp "${debs[0]}" "$tmp/"
deb=$tmp/$(basename "${debs[0]}")
dpkg-deb -f "$deb" Package Version Depends
dpkg-deb -I "$deb" conffiles | grep -qx /etc/sockbus/sockbusd.conf ||
  fail "/etc/sockbus/sockbusd.conf is not a conffile"
ok "built $(basename "$deb")"

step "install it"
if dpkg-query -W -f='${Status}' sockbus 2>/dev/null | grep -q "ok installed"; then
  echo "deb-check: sockbus was already installed; it is replaced, then purged"
fi
installed=yes
"${APT[@]}" install "$deb" >"$tmp/apt.log" 2>&1 || {
  cat "$tmp/apt.log"
  fail "apt-get install"
}
dpkg-query -W -f='${Status}' sockbus | grep -q "ok installed" ||
  fail "sockbus is not installed"
ok "installed"

step "check the installed files"
[ "$(command -v sockbusd)" = /usr/sbin/sockbusd ] || fail "no /usr/sbin/sockbusd"
v=$(timeout "$WAIT_S" sockbusd --version) || fail "sockbusd --version"
echo "$v"
v=$(timeout "$WAIT_S" sockbus --version) || fail "sockbus --version"
echo "$v"
timeout "$WAIT_S" sockbus-bench --help >/dev/null || fail "sockbus-bench --help"
ok "sockbusd, sockbus and sockbus-bench run"

for page in man8/sockbusd.8.gz man1/sockbus.1.gz man1/sockbus-bench.1.gz; do
  dpkg -L sockbus | grep -qx "/usr/share/man/$page" ||
    fail "$page is not in the package"
  if [ ! -f "/usr/share/man/$page" ] &&
    grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    echo "note: dpkg excludes /usr/share/man here; $page not checked on disk"
    continue
  fi
  [ -f "/usr/share/man/$page" ] || fail "/usr/share/man/$page missing"
  if command -v man >/dev/null; then
    name=$(basename "$page" .gz)
    where=$(man -w "${name##*.}" "${name%.*}") || fail "man -w ${name%.*}"
    [ "$where" = "/usr/share/man/$page" ] || fail "man -w found $where"
  fi
done
ok "man pages sockbusd(8), sockbus(1), sockbus-bench(1)"

dpkg-query -W -f='${Conffiles}\n' sockbus | grep -q '/etc/sockbus/sockbusd.conf' ||
  fail "dpkg does not list /etc/sockbus/sockbusd.conf as a conffile"
[ -f /etc/sockbus/sockbusd.conf ] || fail "no /etc/sockbus/sockbusd.conf"
getent passwd sockbus >/dev/null || fail "the postinst did not create user sockbus"
ok "conffile /etc/sockbus/sockbusd.conf, user sockbus"

unit=/usr/lib/systemd/system/sockbusd.service
[ -f "$unit" ] || fail "no $unit"
grep -qx 'ExecStart=/usr/sbin/sockbusd --config /etc/sockbus/sockbusd.conf' \
  "$unit" || fail "$unit: unexpected ExecStart"
if command -v systemd-analyze >/dev/null; then
  timeout 60 systemd-analyze verify "$unit" >"$tmp/verify.log" 2>&1 || {
    cat "$tmp/verify.log"
    fail "systemd-analyze verify $unit"
  }
  # verify exits 0 on some problems it only prints: any output about this
  # unit is a problem.
  if grep -i 'sockbusd' "$tmp/verify.log"; then
    fail "systemd-analyze verify complained about $unit"
  fi
  ok "systemd-analyze verify $unit"
else
  echo "note: no systemd-analyze; $unit not verified"
fi

# The installed configuration loads (the command line's --listen wins over
# it, so that the check does not need the default port).
sockbusd --config /etc/sockbus/sockbusd.conf --listen 127.0.0.1:0 \
  >"$tmp/sockbusd.out" 2>"$tmp/sockbusd.err" &
running=$!
wait_for "$tmp/sockbusd.out" '^sockbusd listening on 127\.0\.0\.1:[0-9]+$' || {
  cat "$tmp/sockbusd.err"
  fail "sockbusd --config /etc/sockbus/sockbusd.conf did not start"
}
stop || fail "sockbusd exited $? after SIGTERM"
ok "sockbusd starts from /etc/sockbus/sockbusd.conf and stops on SIGTERM"

step "build the example against the installed files (pkg-config)"
pkg-config --exists sockbus || fail "pkg-config cannot find sockbus"
echo "sockbus $(pkg-config --modversion sockbus):" \
  "cflags '$(pkg-config --cflags sockbus)' libs '$(pkg-config --libs sockbus)'" \
  "static '$(pkg-config --static --libs sockbus)'"
# A copy outside the tree: only the installed headers can be found.
cp tools/embed-example.c "$tmp/"
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -o "$tmp/embed-shared" "$tmp/embed-example.c" \
  $(pkg-config --cflags --libs sockbus) || fail "shared build"
readelf -d "$tmp/embed-shared" | grep -q 'NEEDED.*\[libsockbus\.so\.0\]' ||
  fail "embed-shared does not load libsockbus.so.0"
ok "embed-shared: linked to libsockbus.so.0"
# Static: libsockbus.a by name (-l:), since -lsockbus prefers the .so; its
# own dependencies from Libs.private.
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -o "$tmp/embed-static" "$tmp/embed-example.c" \
  $(pkg-config --cflags sockbus) \
  $(pkg-config --static --libs sockbus | sed 's/-lsockbus\b/-l:libsockbus.a/') ||
  fail "static build"
if readelf -d "$tmp/embed-static" | grep -q 'libsockbus'; then
  fail "embed-static loads libsockbus.so"
fi
ok "embed-static: libsockbus.a linked in"

# run_example BINARY: start it on a free port with pattern check.>, publish
# one message to it over TCP, check it printed the message, stop it.
run_example() {
  local bin=$1 out=$tmp/${1##*/}.out err=$tmp/${1##*/}.err
  "$bin" 'check.>' --listen 127.0.0.1:0 >"$out" 2>"$err" &
  running=$!
  wait_for "$out" '^sockbusd listening on 127\.0\.0\.1:[0-9]+$' || {
    cat "$err"
    fail "$bin printed no ready line within ${WAIT_S}s"
  }
  local port
  port=$(sed -n 's/^sockbusd listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")

  # The client: bash's /dev/tcp. Read the greeting, publish with an id,
  # read the server's ok for it.
  local greeting reply
  exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to port $port"
  IFS= read -r -t "$WAIT_S" greeting <&3 || fail "no greeting from $bin"
  [[ $greeting == *'"op":"info"'* ]] || fail "unexpected greeting: $greeting"
  printf '%s\n' '{"op":"pub","topic":"check.deb","data":{"n":42},"id":1}' >&3
  IFS= read -r -t "$WAIT_S" reply <&3 || fail "no answer to pub from $bin"
  [[ $reply == *'"op":"ok"'* ]] || fail "pub answered: $reply"
  exec 3>&-

  wait_for "$out" '^check\.deb \{"n":42\}$' || {
    cat "$out" "$err"
    fail "$bin did not print the message"
  }
  local rc=0
  stop || rc=$?
  [ "$rc" -eq 0 ] || {
    cat "$err"
    fail "$bin exited $rc after SIGTERM"
  }
  grep -q '^embed-example: 1 messages$' "$err" ||
    fail "$bin did not count one message: $(cat "$err")"
  ok "$(basename "$bin") printed the message and stopped on SIGTERM"
}

step "run the example programs"
run_example "$tmp/embed-shared"
run_example "$tmp/embed-static"

step "remove the package"
"${APT[@]}" remove sockbus >"$tmp/apt.log" 2>&1 || {
  cat "$tmp/apt.log"
  fail "apt-get remove sockbus"
}
[ ! -e /usr/sbin/sockbusd ] || fail "/usr/sbin/sockbusd still there after remove"
if pkg-config --exists sockbus; then
  fail "pkg-config still finds sockbus after remove"
fi
[ -f /etc/sockbus/sockbusd.conf ] || fail "remove deleted the conffile"
ok "removed; the conffile stays"
"${APT[@]}" purge sockbus >"$tmp/apt.log" 2>&1 || {
  cat "$tmp/apt.log"
  fail "apt-get purge sockbus"
}
installed=no
[ ! -e /etc/sockbus/sockbusd.conf ] || fail "purge left /etc/sockbus/sockbusd.conf"
ok "purged"

step "deb-check passed"
