#!/bin/sh
# quickstart.sh - kvsep_fdw in one command on a fresh Debian machine:
# installs the packages it needs, builds and installs the extension, starts
# a throwaway PostgreSQL 15 server with kvsep_fdw preloaded, creates a
# foreign table, loads sample data and runs a few queries.  The server and
# its files are removed at the end (KVSEP_QUICKSTART_KEEP=1 keeps them and
# prints how to connect).
#
#   sh scripts/quickstart.sh            the PostgreSQL quick start
#   sh scripts/quickstart.sh --engine   the engine alone (kvbench, kvctl)
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh

if [ "${1:-}" = "--engine" ]; then
    make -s -C engine
    db=$(mktemp -d "${TMPDIR:-/tmp}/kvsep-quickstart.XXXXXX")
    trap 'rm -rf "$db"' EXIT
    echo "== kvbench: 200000 keys of 128 bytes in $db"
    engine/bin/kvbench --dir "$db" --num 200000 --value-size 128 \
        --benchmarks fillrandom,readrandom,scan
    echo "== kvctl info"
    engine/bin/kvctl info "$db"
    exit 0
fi

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "== building and installing kvsep_fdw"
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
$SUDO make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

. "$top/scripts/pg_cluster.sh"
dir=$(mktemp -d /tmp/kvsep-quickstart.XXXXXX)
chmod 755 "$dir"
cleanup() {
    if [ "${KVSEP_QUICKSTART_KEEP:-0}" = 1 ]; then
        echo "== the server keeps running: psql -h $dir -p 54399 -U postgres postgres"
        echo "   stop it with: $PGC_BIN/pg_ctl -D $dir/data stop (as user postgres)"
    else
        pgc_destroy >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
echo "== starting a throwaway PostgreSQL 15 server in $dir (shared_preload_libraries = 'kvsep_fdw')"
pgc_init "$dir" 54399 >/dev/null
pgc_start >/dev/null

cat > "$dir/quickstart.sql" <<'EOF'
\echo '== CREATE EXTENSION, a server and a foreign table'
CREATE EXTENSION kvsep_fdw;
CREATE SERVER kv FOREIGN DATA WRAPPER kvsep_fdw;
CREATE FOREIGN TABLE events (
    id      bigint OPTIONS (key 'true'),
    kind    text,
    payload bytea
) SERVER kv;
\echo '== loading 200000 events (every tenth with a 4 KiB payload, stored in the value log)'
\timing on
INSERT INTO events
SELECT g, (ARRAY['click', 'view', 'buy'])[1 + g % 3],
       CASE WHEN g % 10 = 0 THEN convert_to(repeat(md5(g::text), 128), 'UTF8') END
FROM generate_series(1, 200000) g;
\echo '== a point lookup, a range in key order, a count that reads no values'
SELECT id, kind, length(payload) FROM events WHERE id = 4242;
SELECT id, kind FROM events WHERE id BETWEEN 100 AND 105 ORDER BY id DESC;
SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind;
\timing off
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM events WHERE id < 50000;
EXPLAIN (COSTS OFF) SELECT * FROM events WHERE id IN (7, 70, 700) ORDER BY id;
\echo '== transactions: an update, a savepoint, a rollback'
BEGIN;
UPDATE events SET kind = 'refund' WHERE id = 3;
SAVEPOINT s;
DELETE FROM events WHERE id < 1000;
ROLLBACK TO s;
COMMIT;
SELECT id, kind FROM events WHERE id <= 3 ORDER BY id;
\echo '== the engine: worker status, levels, value-log files'
SELECT worker_pid, state, engine_version FROM kvsep_status();
SELECT kvsep_flush();
SELECT level, tables, pg_size_pretty(size_bytes) AS size, keys FROM kvsep_levels WHERE tables > 0;
SELECT file_id, state, pg_size_pretty(size_bytes) AS size, entries FROM kvsep_vlog_files;
EOF
chmod 644 "$dir/quickstart.sql"
pgc_psql -f "$dir/quickstart.sql"
echo "== done"
