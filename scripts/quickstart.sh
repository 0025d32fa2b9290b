#!/bin/sh
# quickstart.sh - builds the engine and shows it working on a throwaway
# database: a benchmark run (fill, random reads, scan) and an inspection of
# the files it left.  Installs the Debian packages it needs first.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh
make -s -C engine
db=$(mktemp -d "${TMPDIR:-/tmp}/kvsep-quickstart.XXXXXX")
trap 'rm -rf "$db"' EXIT
echo "== kvbench: 200000 keys of 128 bytes in $db"
engine/bin/kvbench --dir "$db" --num 200000 --value-size 128 --benchmarks fillrandom,readrandom,scan
echo "== kvctl info"
engine/bin/kvctl info "$db" 2>/dev/null || ls -l "$db"
echo "== kvctl check"
engine/bin/kvctl check "$db" 2>/dev/null || true
