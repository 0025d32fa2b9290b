#!/bin/sh
# run_fuzzers.sh [SECONDS] [TARGET...] - builds the libFuzzer targets
# (make -C engine fuzz), generates the seed corpora (make_corpus.sh), then
# runs each target (default: every fuzz/fuzz_*.c) in turn, one at a time,
# for SECONDS (default 60) with -max_total_time.  Prints per target the
# number of executions and whether it crashed; exits 1 if any target
# crashed.  Crashing inputs go to build/fuzz/artifacts/<target>/, logs to
# build/fuzz/<target>.log; the inputs a target finds accumulate in
# build/fuzz/work/<target>/ across runs (the generated seeds are only read).
# Extra libFuzzer flags can be passed in $FUZZ_FLAGS; FUZZ_NO_BUILD=1 runs
# the binaries already in build/fuzz without calling make.
set -u
here=$(cd "$(dirname "$0")" && pwd)
engine=$(dirname "$here")
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=$*
if [ -z "$targets" ]; then
    for f in "$here"/fuzz_*.c; do targets="$targets $(basename "$f" .c)"; done
fi

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    make -C "$engine" fuzz || exit 1
fi
sh "$here/make_corpus.sh" > /dev/null || exit 1

status=0
for t in $targets; do
    bin=$engine/build/fuzz/$t
    work=$engine/build/fuzz/work/$t
    art=$engine/build/fuzz/artifacts/$t/
    log=$engine/build/fuzz/$t.log
    mkdir -p "$work" "$art"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$art" ${FUZZ_FLAGS:-} "$work" "$here/corpus/$t" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ $rc -ne 0 ]; then
        status=1
        echo "$t: CRASH after ${execs:-?} executions (exit $rc); input in $art, log in $log"
        grep -m 3 -E 'ERROR:|invariant failed|SUMMARY:' "$log" | sed 's/^/    /'
    else
        echo "$t: ${execs:-?} executions in ${secs} s, no crash" \
            "(corpus $(ls "$work" | wc -l) inputs)"
    fi
done
exit $status
