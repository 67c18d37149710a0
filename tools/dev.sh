#!/usr/bin/env bash
# dev.sh - set up, build, test and run sockbus on a Debian machine.
#
#   tools/dev.sh run [sockbusd flags]   install what is missing, build, run
#                                       sockbusd in the foreground
#   tools/dev.sh test                   install what is missing, build, run
#                                       every test (exit status: ctest's)
#   tools/dev.sh deps                   only install what is missing
#   tools/dev.sh build                  only configure and build
#
# Environment: BUILD_DIR (default build), BUILD_TYPE (RelWithDebInfo),
# SOCKBUS_WERROR (OFF; CI sets ON), SOCKBUS_SANITIZE (empty,
# address,undefined or thread), CTEST_ARGS (extra ctest arguments).
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian packages the build and the tests need.
# nats-server runs the cluster tests; chromium the status page test.
PKGS=(build-essential cmake pkgconf libcjson-dev libcmocka-dev
  libmicrohttpd-dev libnats-dev nats-server chromium)

deps() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "dev.sh: installing ${missing[*]}" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "dev.sh: missing packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

build() {
  local dir=${BUILD_DIR:-build}
  cmake -S . -B "$dir" \
    -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
    -DSOCKBUS_WERROR="${SOCKBUS_WERROR:-OFF}" \
    -DSOCKBUS_SANITIZE="${SOCKBUS_SANITIZE:-}" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  deps) deps ;;
  build) deps; build ;;
  test)
    deps
    build
    # shellcheck disable=SC2086
    ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure \
      --timeout 300 ${CTEST_ARGS:-}
    ;;
  run)
    deps
    build
    exec "${BUILD_DIR:-build}/server/sockbusd" "$@"
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
