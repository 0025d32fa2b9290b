#!/bin/sh
# pg_tests.sh - builds and installs the kvsep_fdw extension (PGXS Makefile at
# the repository top), then runs its SQL-level test suites against real
# PostgreSQL 15 servers:
#   regress    every sql/NAME.sql that has expected/NAME.out, in name order,
#              one at a time, with pg_regress against a private server
#              (database kvsep_regress, created fresh by pg_regress)
#   isolation  every specs/NAME.spec that has expected/NAME.out, with
#              pg_isolation_regress against a private server (database
#              kvsep_isolation)
#   tap        every t/*.pl with prove; the tests make their own servers with
#              PostgreSQL::Test::Cluster
# Usage: sh scripts/pg_tests.sh [regress] [isolation] [tap]   (default: all)
# Prints one line per suite "pg-SUITE: N passed, N failed" and a last line
# "N passed, N failed"; exits non-zero if anything failed.  A suite without
# tests is reported as 0 passed, 0 failed.
#
# The servers run as user postgres (PostgreSQL refuses root) from copies of
# sql/ expected/ specs/ data/ t/ in a temporary directory (the checkout may be
# unreadable for postgres).  regress/isolation servers preload kvsep_fdw
# (see scripts/pg_cluster.sh); the optional file pg_test.conf at the
# repository top is appended to their postgresql.conf and is given to TAP
# tests as TEMP_CONFIG (appended to every PostgreSQL::Test::Cluster node).
# Results (regression.out/.diffs, results/, server.log, TAP logs
# tmp_check/log/) are kept in $KVSEP_PG_OUT (default tmp_check/) as regress/,
# isolation/, tap/.
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# KVSEP_PG_PORT (base port, default 54329; the servers listen only on a
# socket in their own directory), KVSEP_PG_TMP (parent of the temporary
# directory, default /tmp; must be searchable by postgres),
# KVSEP_PG_TIMEOUT (seconds per suite, default 1800), KVSEP_PG_KEEP=1 keeps
# the temporary directory, KVSEP_PG_NOBUILD=1 skips make/make install,
# PROVE_FLAGS (extra prove options, e.g. -v); TAP_TESTS (names of the t/*.pl
# files to run, default all).
set -u
top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
# shellcheck source=scripts/pg_cluster.sh
. "$top/scripts/pg_cluster.sh"

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
parts=${*:-"regress isolation tap"}
out_base=${KVSEP_PG_OUT:-$top/tmp_check}
port_base=${KVSEP_PG_PORT:-54329}
limit=${KVSEP_PG_TIMEOUT:-1800}
total_pass=0
total_fail=0
work=""

die() {
    echo "pg_tests: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

cleanup() {
    if [ -n "$PGC_DIR" ] && [ -d "$PGC_DIR" ]; then
        pgc_stop immediate >/dev/null 2>&1 || pgc_kill9 >/dev/null 2>&1
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then
        if [ "${KVSEP_PG_KEEP:-0}" = 1 ]; then
            echo "pg_tests: kept $work"
        else
            rm -rf "$work"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for p in $parts; do
    case $p in
        regress|isolation|tap) ;;
        *) die "unknown suite '$p' (regress, isolation, tap)" ;;
    esac
done

# --- where PostgreSQL is -------------------------------------------------
[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG (install postgresql-server-dev-15: sh scripts/install-deps.sh)"
bindir=$("$PG_CONFIG" --bindir) || die "$PG_CONFIG --bindir failed"
pgxs_src=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")") || die "$PG_CONFIG --pgxs failed"
pg_regress=$pgxs_src/test/regress/pg_regress
pg_isolation_regress=$pgxs_src/test/isolation/pg_isolation_regress
pg_perl=$pgxs_src/test/perl
[ -x "$bindir/postgres" ] || die "no postgres in $bindir (install postgresql-15)"
[ -x "$pg_regress" ] || die "no pg_regress at $pg_regress (install postgresql-server-dev-15)"
am_root=0
[ "$(id -u)" -eq 0 ] && am_root=1
if [ "$am_root" = 1 ]; then
    id "$PGC_USER" >/dev/null 2>&1 || die "user $PGC_USER does not exist (install postgresql-15)"
    command -v runuser >/dev/null 2>&1 || die "runuser not found (util-linux)"
fi

# run_as_pg DIR CMD...: CMD as postgres (when root) in DIR, under the suite's
# time limit (timeout kills the whole process group: psql, isolationtester).
run_as_pg() {
    _dir=$1
    shift
    if [ "$am_root" = 1 ]; then
        (cd "$_dir" && exec runuser -u "$PGC_USER" -- timeout -k 10 "$limit" "$@")
    else
        (cd "$_dir" && exec timeout -k 10 "$limit" "$@")
    fi
}

give_to_pg() { # path...
    [ "$am_root" = 1 ] && chown -R "$PGC_USER:" "$@"
    return 0
}

# --- which tests exist ---------------------------------------------------
regress_tests=""
for f in "$top"/sql/*.sql; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .sql)
    if [ -f "$top/expected/$n.out" ]; then
        regress_tests="$regress_tests $n"
    else
        echo "pg_tests: warning: sql/$n.sql has no expected/$n.out - not run" >&2
    fi
done
isolation_tests=""
for f in "$top"/specs/*.spec; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .spec)
    if [ -f "$top/expected/$n.out" ]; then
        isolation_tests="$isolation_tests $n"
    else
        echo "pg_tests: warning: specs/$n.spec has no expected/$n.out - not run" >&2
    fi
done
tap_tests=""
for f in ${TAP_TESTS:-"$top"/t/*.pl}; do
    f="$top/t/$(basename "$f")"
    [ -f "$f" ] || continue
    tap_tests="$tap_tests t/$(basename "$f")"
done
have_tests=0
for p in $parts; do
    case $p in
        regress) [ -n "$regress_tests" ] && have_tests=1 ;;
        isolation) [ -n "$isolation_tests" ] && have_tests=1 ;;
        tap) [ -n "$tap_tests" ] && have_tests=1 ;;
    esac
done

mkdir -p "$out_base" || die "cannot create $out_base"

# --- build and install ---------------------------------------------------
if [ "${KVSEP_PG_NOBUILD:-0}" = 1 ]; then
    echo "pg_tests: KVSEP_PG_NOBUILD=1: not building the extension"
elif [ ! -f "$top/Makefile" ]; then
    if [ "$have_tests" = 1 ]; then
        die "no Makefile at $top: cannot build the extension"
    fi
    echo "pg_tests: no Makefile and no tests yet - nothing to do"
else
    blog=$out_base/pg-build.log
    echo "pg_tests: make -C $top PG_CONFIG=$PG_CONFIG (log $blog)"
    if ! make -C "$top" PG_CONFIG="$PG_CONFIG" > "$blog" 2>&1; then
        tail -n 60 "$blog"
        die "building the extension failed (log $blog)"
    fi
    SUDO=""
    [ "$am_root" = 1 ] || SUDO=sudo
    if ! $SUDO make -C "$top" PG_CONFIG="$PG_CONFIG" install >> "$blog" 2>&1; then
        tail -n 30 "$blog"
        die "make install failed (log $blog)"
    fi
fi

# --- the temporary directory, readable by postgres -------------------------
if [ "$have_tests" = 1 ]; then
    tmp_parent=${KVSEP_PG_TMP:-/tmp}
    work=$(mktemp -d "$tmp_parent/kvsep_pg.XXXXXX") || die "cannot create a temporary directory in $tmp_parent"
    chmod 755 "$work" || die "chmod $work failed"
    if [ "$am_root" = 1 ] && ! runuser -u "$PGC_USER" -- test -x "$work"; then
        die "user $PGC_USER cannot reach $work (set KVSEP_PG_TMP to a directory like /tmp)"
    fi
    # Extra server settings from the repository, readable by postgres.
    extra_conf=""
    if [ -f "$top/pg_test.conf" ]; then
        cp "$top/pg_test.conf" "$work/pg_test.conf" || die "cannot copy pg_test.conf"
        chmod 644 "$work/pg_test.conf"
        extra_conf=$work/pg_test.conf
    fi
fi

report() { # suite passed failed
    echo "pg-$1: $2 passed, $3 failed"
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
}

# copy_inputs DEST: sql/ expected/ specs/ data/ (those present) into DEST
copy_inputs() {
    mkdir -p "$1" || return 1
    for d in sql expected specs data; do
        if [ -d "$top/$d" ]; then
            cp -R "$top/$d" "$1/" || return 1
        fi
    done
}

# server_checks NAME: after a suite, the server must still be running and its
# log must show no crash; stops it.  Prints the number of failures (0 or more)
# on stdout, explanations on stderr.
server_checks() {
    _bad=0
    _crash='terminated by signal|PANIC:|TRAP:|was terminated by exception'
    if grep -qE "$_crash" "$PGC_LOG"; then
        echo "pg-$1: the server log shows a crash:" >&2
        grep -E "$_crash" "$PGC_LOG" | head -n 10 >&2
        _bad=$((_bad + 1))
    fi
    if ! pgc_pid >/dev/null; then
        echo "pg-$1: the server is no longer running" >&2
        _bad=$((_bad + 1))
    elif [ "$_bad" -ne 0 ]; then
        # it may still be in crash recovery, where a fast shutdown can hang
        pgc_stop immediate >&2 || pgc_kill9 >&2
    elif ! pgc_stop fast >&2; then
        echo "pg-$1: the server did not shut down cleanly" >&2
        _bad=$((_bad + 1))
        pgc_stop immediate >&2 || pgc_kill9 >&2
    fi
    echo "$_bad"
}

# run_pg_regress NAME DRIVER DBNAME PORT TESTS...: one private server, one
# pg_regress-style driver run.
run_pg_regress() {
    name=$1
    driver=$2
    db=$3
    port=$4
    shift 4
    rtests=$*
    dir=$work/$name
    out=$out_base/$name
    rm -rf "$out"
    mkdir -p "$out"
    copy_inputs "$dir/in" || { report "$name" 0 1; return; }
    mkdir -p "$dir/out"
    give_to_pg "$dir"
    chmod 755 "$dir"
    set --
    [ -n "$extra_conf" ] && set -- "include = '$extra_conf'"
    if ! pgc_init "$dir/pg" "$port" "$@" || ! pgc_start; then
        [ -n "$PGC_LOG" ] && [ -f "$PGC_LOG" ] && cp "$PGC_LOG" "$out/server.log"
        echo "pg-$name: could not set up the server"
        report "$name" 0 1
        return
    fi
    # shellcheck disable=SC2086
    run_as_pg "$dir" "$driver" --bindir="$bindir" --host="$PGC_DIR" --port="$PGC_PORT" \
        --user=postgres --dbname="$db" --inputdir="$dir/in" --outputdir="$dir/out" \
        $rtests > "$dir/driver.out" 2>&1
    rc=$?
    cat "$dir/driver.out"
    [ "$rc" -eq 124 ] && printf '\npg-%s: timed out after %ss\n' "$name" "$limit"
    p=$(grep -cE '\.\.\. ok' "$dir/driver.out")
    f=$(grep -cE '\.\.\. (FAILED|failed)' "$dir/driver.out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # the driver failed without running a test (see its output)
    fi
    extra=$(server_checks "$name")
    f=$((f + extra))
    cp "$PGC_LOG" "$out/server.log" 2>/dev/null
    cp -R "$dir/out/." "$out/" 2>/dev/null
    if [ "$f" -ne 0 ]; then
        for diffs in "$dir/out/regression.diffs" "$dir/out/output_iso/regression.diffs"; do
            if [ -s "$diffs" ]; then
                echo "--- head of $diffs (copy in $out)"
                head -n 200 "$diffs"
            fi
        done
        pgc_log_tail 50
    fi
    pgc_stop immediate >/dev/null 2>&1
    report "$name" "$p" "$f"
}

# prove_failed_files FILE: the test files prove's summary reports as failed.
prove_failed_files() {
    awk '
        /^Test Summary Report/ { s = 1; next }
        s && /^Files=/ { s = 0 }
        s && /^[^ -].* \(Wstat: / {
            if (cur != "" && bad) print cur
            cur = $1; bad = 0
            if ($0 !~ /\(Wstat: 0 / || $0 !~ / Failed: 0\)/) bad = 1
            next
        }
        s && /^ +Parse errors:/ { bad = 1 }
        END { if (cur != "" && bad) print cur }
    ' "$1"
}

run_tap() {
    name=tap
    dir=$work/tap
    out=$out_base/tap
    rm -rf "$out"
    mkdir -p "$out" "$dir"
    cp -R "$top/t" "$dir/" || { report tap 0 1; return; }
    give_to_pg "$dir"
    if [ ! -f "$pg_perl/PostgreSQL/Test/Cluster.pm" ]; then
        echo "pg-tap: no PostgreSQL::Test::Cluster in $pg_perl (install postgresql-server-dev-15)"
        report tap 0 1
        return
    fi
    if ! perl -MIPC::Run -e 1 2>/dev/null; then
        echo "pg-tap: the Perl module IPC::Run is missing (apt-get install libipc-run-perl)"
        report tap 0 1
        return
    fi
    # PostgreSQL::Test::Utils (PG 15) reads TESTDIR (it puts tmp_check/ there)
    # and PG_REGRESS; TMPDIR receives the nodes' socket directories.
    mkdir -p "$dir/tmp"
    give_to_pg "$dir/tmp"
    # shellcheck disable=SC2086
    run_as_pg "$dir" env PATH="$bindir:/usr/local/bin:/usr/bin:/bin" TMPDIR="$dir/tmp" LANG=C.UTF-8 \
        TESTDIR="$dir" PG_REGRESS="$pg_regress" PERL5LIB="$pg_perl:$dir/t" \
        PG_TEST_PORT_DIR="$dir/tmp_check/portlock" ${extra_conf:+TEMP_CONFIG="$extra_conf"} \
        prove -I "$pg_perl" -I "$dir/t" ${PROVE_FLAGS:-} $tap_tests > "$dir/prove.out" 2>&1
    rc=$?
    cat "$dir/prove.out"
    [ "$rc" -eq 124 ] && printf '\npg-tap: timed out after %ss\n' "$limit"
    files=$(sed -n 's/^Files=\([0-9][0-9]*\),.*/\1/p' "$dir/prove.out" | tail -n 1)
    failed_files=$(prove_failed_files "$dir/prove.out")
    f=0
    for t in $failed_files; do f=$((f + 1)); done
    if [ -z "$files" ]; then
        # prove did not finish: count every test file as failed
        p=0
        f=0
        for t in $tap_tests; do f=$((f + 1)); done
        failed_files=$tap_tests
    else
        p=$((files - f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    fi
    # the logs only (node data directories are large; KVSEP_PG_KEEP=1 keeps them)
    if [ -d "$dir/tmp_check/log" ]; then
        mkdir -p "$out/tmp_check" && cp -R "$dir/tmp_check/log" "$out/tmp_check/" 2>/dev/null
    fi
    if [ "$f" -ne 0 ]; then
        for t in $failed_files; do
            log=$dir/tmp_check/log/regress_log_$(basename "$t" .pl)
            if [ -f "$log" ]; then
                echo "--- last 60 lines of $log (copy in $out/tmp_check/log)"
                tail -n 60 "$log"
            fi
        done
        for t in $failed_files; do
            for log in "$dir/tmp_check/log/$(basename "$t" .pl)"_*.log; do
                [ -f "$log" ] || continue
                echo "--- last 30 lines of server log $log"
                tail -n 30 "$log"
            done
        done
    fi
    report tap "$p" "$f"
}

for p in $parts; do
    case $p in
        regress)
            tests=$regress_tests
            if [ -z "$tests" ]; then
                echo "pg-regress: no tests (sql/*.sql with expected/*.out)"
                report regress 0 0
            else
                # shellcheck disable=SC2086
                run_pg_regress regress "$pg_regress" kvsep_regress "$port_base" $tests
            fi
            ;;
        isolation)
            tests=$isolation_tests
            if [ -z "$tests" ]; then
                echo "pg-isolation: no tests (specs/*.spec with expected/*.out)"
                report isolation 0 0
            elif [ ! -x "$pg_isolation_regress" ]; then
                echo "pg-isolation: no pg_isolation_regress at $pg_isolation_regress (install postgresql-server-dev-15)"
                report isolation 0 1
            else
                # shellcheck disable=SC2086
                run_pg_regress isolation "$pg_isolation_regress" kvsep_isolation "$((port_base + 1))" $tests
            fi
            ;;
        tap)
            if [ -z "$tap_tests" ]; then
                echo "pg-tap: no tests (t/*.pl)"
                report tap 0 0
            else
                run_tap
            fi
            ;;
    esac
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
