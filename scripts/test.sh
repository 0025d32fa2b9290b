#!/bin/sh
# test.sh - runs every test suite of kvsep and ends with one line
# "N passed, N failed" (the sum over all suites).  Installs what it needs
# from Debian packages first.  Suites:
#   engine        make -C engine test    (unit, model, crash, fault, multi-process)
#   engine-asan   make -C engine asan    (the same under AddressSanitizer + UBSan)
#   engine-tsan   make -C engine tsan    (the same under ThreadSanitizer)
#   pg-regress    sh scripts/pg_tests.sh regress    (builds and installs the
#                 extension, pg_regress on sql/*.sql against a private server)
#   pg-isolation  sh scripts/pg_tests.sh isolation  (pg_isolation_regress on specs/*.spec)
#   pg-tap        sh scripts/pg_tests.sh tap        (prove on t/*.pl)
# Set KVSEP_SUITES to run a subset, e.g. KVSEP_SUITES="engine".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
sh scripts/install-deps.sh || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

suites=${KVSEP_SUITES:-"engine engine-asan engine-tsan pg-regress pg-isolation pg-tap"}
total_pass=0
total_fail=0
log_dir=${KVSEP_TEST_LOGS:-$top/engine/build/test-logs}
mkdir -p "$log_dir"

run_suite() { # name, command...
    name=$1
    shift
    log="$log_dir/$name.log"
    start=$(date +%s)
    "$@" > "$log" 2>&1
    rc=$?
    line=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p')
    f=$(echo "$line" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p')
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # a build failure counts
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    echo "suite $name: $p passed, $f failed ($(( $(date +%s) - start ))s, log $log)"
    if [ "$f" -ne 0 ]; then
        grep -E '^(FAIL|ok )|FAILED|not ok|Dubious|timed out|^pg|error|Error' "$log" | grep -v '^ok ' | tail -n 30 | sed 's/^/    /'
    fi
}

for s in $suites; do
    case $s in
        engine) run_suite engine make -C engine test ;;
        engine-asan) run_suite engine-asan make -C engine asan ;;
        engine-tsan) run_suite engine-tsan make -C engine tsan ;;
        pg-regress) run_suite pg-regress sh scripts/pg_tests.sh regress ;;
        pg-isolation) run_suite pg-isolation sh scripts/pg_tests.sh isolation ;;
        pg-tap) run_suite pg-tap sh scripts/pg_tests.sh tap ;;
        *) echo "unknown suite $s"; total_fail=$((total_fail + 1)) ;;
    esac
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
