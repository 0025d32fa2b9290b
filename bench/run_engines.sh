#!/bin/sh
# run_engines.sh - kvsep's kvbench beside RocksDB, RocksDB+BlobDB, LevelDB and
# Badger on the common workload, through ../shared/anchors/run_engines.sh
# (the peers' harnesses; same command line and output).  Prints the
# markdown table; raw logs go to bench/results/raw/engines-<timestamp>.
#   sh bench/run_engines.sh                       # the three default sizes
#   SIZES="128:1000000" sh bench/run_engines.sh   # any anchors knob works
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS:-$top/../shared/anchors}
KVSEP_EXTRA_PKGS="librocksdb-dev libleveldb-dev golang-go golang-github-dgraph-io-badger-dev" \
    sh "$top/scripts/install-deps.sh" >&2
make -s -C "$top/engine" >&2
ts=$(date +%Y%m%d-%H%M%S)
mkdir -p "$top/bench/results/raw"
KVSEP_BENCH="$top/engine/bin/kvbench" \
BUILD_DIR=${BUILD_DIR:-${TMPDIR:-/tmp}/kvsep-anchors-build} \
RAW_DIR=${RAW_DIR:-$top/bench/results/raw/engines-$ts} \
    "$anchors/run_engines.sh"
