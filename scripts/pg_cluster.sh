# pg_cluster.sh - a small POSIX sh library that runs a private PostgreSQL
# server for tests.  Source it:   . scripts/pg_cluster.sh
#
#   pgc_init DIR PORT [LINE...]  initdb DIR/data (as user postgres when run as
#                                root; --no-sync, trust, UTF8, C locale) and
#                                write its configuration: kvsep_fdw preloaded,
#                                no TCP (listen_addresses = ''), socket in DIR,
#                                port PORT, fsync on, max_connections 40,
#                                shared_buffers 128MB, log to DIR/server.log.
#                                Each LINE is appended to postgresql.conf
#                                (later lines win, e.g.
#                                "shared_preload_libraries = ''").
#                                Selects DIR as the current cluster.
#   pgc_use DIR PORT             select an existing cluster made by pgc_init
#   pgc_start                    start it (waits until it accepts connections)
#   pgc_stop [MODE]              stop it (smart|fast|immediate, default fast);
#                                succeeds if it is not running
#   pgc_psql [ARG...]            psql -X -v ON_ERROR_STOP=1 as postgres over
#                                the socket (database postgres unless ARGs
#                                name one); files given with -f must be
#                                readable by postgres
#   pgc_kill9                    kill -9 the postmaster and its children and
#                                wait until they are gone (a crash)
#   pgc_log_tail [N]             the last N (default 50) lines of server.log
#   pgc_destroy                  stop (immediate, else kill -9), remove DIR
#   pgc_pid                      print the postmaster's pid (fails if none)
#   pgc_as_pg CMD [ARG...]       run a command as the server's user, in DIR
#
# After pgc_init/pgc_use: PGC_DIR (also the socket directory), PGC_DATA
# (DIR/data), PGC_PORT, PGC_LOG (DIR/server.log), PGC_BIN.
# Settings (environment): PG_CONFIG (default
# /usr/lib/postgresql/15/bin/pg_config), PGC_USER (default postgres; used only
# when running as root - PostgreSQL refuses to run as root), PGC_INITDB_OPTS
# (extra initdb options), PGC_TIMEOUT (seconds for start/stop, default 60).
# DIR's parent directories must be searchable by PGC_USER (e.g. under /tmp,
# not under /root).

PGC_USER=${PGC_USER:-postgres}
PGC_TIMEOUT=${PGC_TIMEOUT:-60}
PGC_DIR=${PGC_DIR:-}
PGC_PORT=${PGC_PORT:-}
PGC_DATA=${PGC_DATA:-}
PGC_LOG=${PGC_LOG:-}
PGC_BIN=${PGC_BIN:-}

pgc__err() {
    echo "pg_cluster: $*" >&2
}

pgc__bin() {
    [ -n "$PGC_BIN" ] && return 0
    _pgc_cfg=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    if [ ! -x "$_pgc_cfg" ]; then
        pgc__err "pg_config not found at $_pgc_cfg (install postgresql-server-dev-15 or set PG_CONFIG)"
        return 1
    fi
    PGC_BIN=$("$_pgc_cfg" --bindir) || { pgc__err "$_pgc_cfg --bindir failed"; return 1; }
    if [ ! -x "$PGC_BIN/initdb" ] || [ ! -x "$PGC_BIN/pg_ctl" ]; then
        pgc__err "no initdb/pg_ctl in $PGC_BIN (install postgresql-15)"
        PGC_BIN=
        return 1
    fi
}

pgc__need() {
    if [ -z "$PGC_DIR" ] || [ -z "$PGC_PORT" ]; then
        pgc__err "no cluster selected (call pgc_init DIR PORT or pgc_use DIR PORT first)"
        return 1
    fi
    pgc__bin
}

pgc__root() {
    [ "$(id -u)" -eq 0 ]
}

# pgc_as_pg CMD [ARG...]: runs CMD as PGC_USER when root, else as ourselves;
# in PGC_DIR (or /) so that an unreadable working directory does not matter.
pgc_as_pg() {
    if pgc__root; then
        (cd "${PGC_DIR:-/}" 2>/dev/null || cd /; exec runuser -u "$PGC_USER" -- "$@")
    else
        (cd "${PGC_DIR:-/}" 2>/dev/null || cd /; exec "$@")
    fi
}

pgc_use() {
    if [ $# -lt 2 ]; then
        pgc__err "usage: pgc_use DIR PORT"
        return 1
    fi
    case $1 in
        /*) PGC_DIR=$1 ;;
        *) PGC_DIR=$(pwd)/$1 ;;
    esac
    PGC_PORT=$2
    PGC_DATA=$PGC_DIR/data
    PGC_LOG=$PGC_DIR/server.log
}

pgc_init() {
    if [ $# -lt 2 ]; then
        pgc__err "usage: pgc_init DIR PORT [postgresql.conf line...]"
        return 1
    fi
    case $2 in
        ''|*[!0-9]*) pgc__err "pgc_init: bad port '$2'"; return 1 ;;
    esac
    pgc_use "$1" "$2" || return 1
    shift 2
    pgc__bin || return 1
    if [ -e "$PGC_DATA" ]; then
        pgc__err "pgc_init: $PGC_DATA already exists"
        return 1
    fi
    # A Unix socket path is limited to 107 bytes.
    if [ $(( ${#PGC_DIR} + 20 )) -gt 107 ]; then
        pgc__err "pgc_init: $PGC_DIR is too long for a Unix socket directory"
        return 1
    fi
    mkdir -p "$PGC_DIR" || { pgc__err "cannot create $PGC_DIR"; return 1; }
    if pgc__root; then
        if ! id "$PGC_USER" >/dev/null 2>&1; then
            pgc__err "user $PGC_USER does not exist (install postgresql-15)"
            return 1
        fi
        chown "$PGC_USER:" "$PGC_DIR" || return 1
        if ! runuser -u "$PGC_USER" -- test -w "$PGC_DIR" -a -x "$PGC_DIR"; then
            pgc__err "user $PGC_USER cannot write $PGC_DIR (is a parent directory private, e.g. /root?)"
            return 1
        fi
    fi
    chmod 700 "$PGC_DIR" || return 1
    # shellcheck disable=SC2086
    if ! pgc_as_pg "$PGC_BIN/initdb" -D "$PGC_DATA" --no-sync -A trust -U postgres \
            -E UTF8 --locale=C ${PGC_INITDB_OPTS:-} > "$PGC_DIR/initdb.log" 2>&1; then
        pgc__err "initdb failed:"
        tail -n 20 "$PGC_DIR/initdb.log" >&2
        return 1
    fi
    {
        echo ""
        echo "# added by pg_cluster.sh"
        echo "shared_preload_libraries = 'kvsep_fdw'"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$PGC_DIR'"
        echo "port = $PGC_PORT"
        echo "fsync = on"
        echo "max_connections = 40"
        echo "shared_buffers = 128MB"
        echo "logging_collector = off"
        echo "log_destination = 'stderr'"
        echo "log_line_prefix = '%m [%p] %q%a '"
        echo "lc_messages = 'C'"
        for _pgc_l in "$@"; do
            echo "$_pgc_l"
        done
    } >> "$PGC_DATA/postgresql.conf" || return 1
    touch "$PGC_LOG" || return 1
    if pgc__root; then
        chown "$PGC_USER:" "$PGC_LOG" || return 1
    fi
}

# pgc__alive PID: the process exists and is not a zombie
pgc__alive() {
    _pgc_st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $_pgc_st in
        ''|Z*) return 1 ;;
    esac
    return 0
}

pgc_pid() {
    pgc__need || return 1
    [ -f "$PGC_DATA/postmaster.pid" ] || return 1
    _pgc_pid=$(head -n 1 "$PGC_DATA/postmaster.pid" 2>/dev/null)
    case $_pgc_pid in
        ''|*[!0-9]*) return 1 ;;
    esac
    pgc__alive "$_pgc_pid" || return 1
    echo "$_pgc_pid"
}

pgc_start() {
    pgc__need || return 1
    if [ ! -f "$PGC_DATA/PG_VERSION" ]; then
        pgc__err "pgc_start: no cluster in $PGC_DATA (call pgc_init)"
        return 1
    fi
    if ! pgc_as_pg "$PGC_BIN/pg_ctl" -D "$PGC_DATA" -l "$PGC_LOG" -w -t "$PGC_TIMEOUT" start >/dev/null 2>"$PGC_DIR/pg_ctl.err"; then
        pgc__err "could not start the server in $PGC_DATA (port $PGC_PORT):"
        cat "$PGC_DIR/pg_ctl.err" >&2
        pgc_log_tail 30 >&2
        return 1
    fi
}

pgc_stop() {
    pgc__need || return 1
    _pgc_mode=${1:-fast}
    [ -f "$PGC_DATA/postmaster.pid" ] || return 0
    pgc_pid >/dev/null || return 0
    if ! pgc_as_pg "$PGC_BIN/pg_ctl" -D "$PGC_DATA" -m "$_pgc_mode" -w -t "$PGC_TIMEOUT" stop >/dev/null 2>"$PGC_DIR/pg_ctl.err"; then
        pgc__err "could not stop the server in $PGC_DATA (mode $_pgc_mode):"
        cat "$PGC_DIR/pg_ctl.err" >&2
        return 1
    fi
}

pgc_kill9() {
    pgc__need || return 1
    _pgc_pid=$(pgc_pid) || { pgc__err "pgc_kill9: the server is not running"; return 1; }
    _pgc_kids=$(ps -o pid= --ppid "$_pgc_pid" 2>/dev/null | tr '\n' ' ')
    kill -9 "$_pgc_pid" 2>/dev/null
    # shellcheck disable=SC2086
    [ -n "$_pgc_kids" ] && kill -9 $_pgc_kids 2>/dev/null
    _pgc_n=0
    for _pgc_p in $_pgc_pid $_pgc_kids; do
        while kill -0 "$_pgc_p" 2>/dev/null; do  # until reaped: a zombie still blocks a restart
            _pgc_n=$((_pgc_n + 1))
            if [ "$_pgc_n" -gt "$((PGC_TIMEOUT * 10))" ]; then
                pgc__err "pgc_kill9: process $_pgc_p does not exit"
                return 1
            fi
            sleep 0.1
        done
    done
    return 0
}

pgc_psql() {
    pgc__need || return 1
    pgc_as_pg env PGDATABASE=postgres PGCONNECT_TIMEOUT=10 "$PGC_BIN/psql" -X -q \
        -v ON_ERROR_STOP=1 -h "$PGC_DIR" -p "$PGC_PORT" -U postgres "$@"
}

pgc_log_tail() {
    pgc__need || return 1
    if [ -f "$PGC_LOG" ]; then
        echo "--- last ${1:-50} lines of $PGC_LOG"
        tail -n "${1:-50}" "$PGC_LOG"
    else
        echo "--- no server log at $PGC_LOG"
    fi
}

pgc_destroy() {
    pgc__need || return 1
    if pgc_pid >/dev/null; then
        pgc_stop immediate 2>/dev/null || pgc_kill9
    fi
    rm -rf "$PGC_DIR"
}
