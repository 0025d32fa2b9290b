#!/bin/sh
# run_tests.sh BUILD MODE - runs every engine test binary in BUILD/tests and
# prints one line per binary and a final "N passed, N failed" (counted in
# Check test cases).  MODE=valgrind runs each under valgrind memcheck.
build=$1
mode=$2
passed=0
failed=0
status=0
# tests that run tools find them under build/<mode> (valgrind uses release)
if [ "$mode" = valgrind ]; then KV_BUILD_MODE=release; else KV_BUILD_MODE=$mode; fi
export KV_BUILD_MODE
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    log=$(mktemp)
    if [ "$mode" = valgrind ]; then
        KV_TEST_SCALE=${KV_TEST_SCALE:-0.1} CK_TIMEOUT_MULTIPLIER=20 \
            valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --suppressions=tests/valgrind.supp "$t" > "$log" 2>&1
    else
        "$t" > "$log" 2>&1
    fi
    rc=$?
    # Check's summary: "NN%: Checks: C, Failures: F, Errors: E"
    line=$(grep -E '^[0-9]+%: Checks:' "$log" | tail -n 1)
    c=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
    f=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\).*/\1/p')
    e=$(echo "$line" | sed -n 's/.*Errors: \([0-9]*\).*/\1/p')
    c=${c:-0}; f=${f:-0}; e=${e:-0}
    bad=$((f + e))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
    ok=$((c - f - e))
    [ $ok -lt 0 ] && ok=0
    passed=$((passed + ok))
    failed=$((failed + bad))
    if [ "$bad" -ne 0 ]; then
        status=1
        echo "FAIL $name (exit $rc)"
        sed -e 's/^/    /' "$log" | tail -n 40
    else
        echo "ok   $name ($ok checks)"
    fi
    rm -f "$log"
done
echo "engine[$mode]: $passed passed, $failed failed"
exit $status
