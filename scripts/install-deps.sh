#!/bin/sh
# install-deps.sh - installs the Debian packages kvsep needs to build and
# test (compiler, snappy, zstd, xxhash, the Check test framework, clang for
# the fuzzers and sanitizers, PostgreSQL 15 with its server headers, PGXS,
# pg_regress and TAP modules, and IPC::Run for the TAP tests).  Safe to run
# again: it only installs what is missing.  Needs root (or sudo).
set -e
pkgs="build-essential pkg-config libsnappy-dev libzstd-dev libxxhash-dev check libsubunit-dev
      clang llvm valgrind procps
      postgresql-15 postgresql-server-dev-15 perl libipc-run-perl"
[ -n "$KVSEP_EXTRA_PKGS" ] && pkgs="$pkgs $KVSEP_EXTRA_PKGS"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || $SUDO apt-get update
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >/dev/null || $SUDO apt-get install -y $missing
