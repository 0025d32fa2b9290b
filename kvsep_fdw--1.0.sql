/* kvsep_fdw--1.0.sql - the kvsep_fdw extension: the foreign-data wrapper,
 * its catalog of table key prefixes, the event triggers that keep stored
 * data consistent with table definitions, and the admin functions. */

\echo Use "CREATE EXTENSION kvsep_fdw" to load this file. \quit

CREATE FUNCTION kvsep_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION kvsep_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER kvsep_fdw
  HANDLER kvsep_fdw_handler
  VALIDATOR kvsep_fdw_validator;

-- Which engine key prefix each foreign table owns (src/catalog.c).  Only
-- the extension's code changes it.
CREATE TABLE kvsep_relations (
    relid  oid PRIMARY KEY,
    prefix bigint NOT NULL UNIQUE
);
CREATE SEQUENCE kvsep_prefix_seq;
REVOKE ALL ON kvsep_relations FROM PUBLIC;
REVOKE ALL ON kvsep_prefix_seq FROM PUBLIC;

-- Event triggers (src/ddl.c).
CREATE FUNCTION kvsep_ddl_start()
RETURNS event_trigger
AS 'MODULE_PATHNAME'
LANGUAGE C;

CREATE FUNCTION kvsep_ddl_end()
RETURNS event_trigger
AS 'MODULE_PATHNAME'
LANGUAGE C;

CREATE FUNCTION kvsep_sql_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME'
LANGUAGE C;

CREATE EVENT TRIGGER kvsep_ddl_start ON ddl_command_start
  WHEN TAG IN ('ALTER FOREIGN TABLE', 'ALTER TABLE')
  EXECUTE FUNCTION kvsep_ddl_start();

CREATE EVENT TRIGGER kvsep_ddl_end ON ddl_command_end
  WHEN TAG IN ('CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'ALTER TABLE')
  EXECUTE FUNCTION kvsep_ddl_end();

CREATE EVENT TRIGGER kvsep_sql_drop ON sql_drop
  EXECUTE FUNCTION kvsep_sql_drop();

-- admin.sql - administration and monitoring functions and views of
-- kvsep_fdw (C code in src/admin.c).  A fragment of kvsep_fdw--1.0.sql:
-- objects go into the extension's schema (not schema-qualified).

-- The worker's state and the engine's health.  Never waits for the engine:
-- engine_version and background_error are NULL unless the worker is ready.
CREATE FUNCTION kvsep_status(
	OUT worker_pid int,
	OUT state text,
	OUT started_at timestamptz,
	OUT uptime interval,
	OUT restarts bigint,
	OUT error text,
	OUT engine_version bigint,
	OUT compactors int,
	OUT background_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'kvsep_status'
LANGUAGE C VOLATILE;

-- State-changing requests (not granted to PUBLIC, see below).

-- Writes the memtables out to L0 and waits for it.
CREATE FUNCTION kvsep_flush()
RETURNS void
AS 'MODULE_PATHNAME', 'kvsep_flush'
LANGUAGE C VOLATILE;

-- Compacts everything into the bottom-most level (run by the worker; waits).
CREATE FUNCTION kvsep_compact()
RETURNS void
AS 'MODULE_PATHNAME', 'kvsep_compact'
LANGUAGE C VOLATILE;

-- One value-log GC round over files with at least discard_ratio dead bytes
-- (run by the worker).  false: no file qualified.
CREATE FUNCTION kvsep_vlog_gc(discard_ratio float8 DEFAULT 0.5)
RETURNS boolean
AS 'MODULE_PATHNAME', 'kvsep_vlog_gc'
LANGUAGE C VOLATILE STRICT;

REVOKE ALL ON FUNCTION kvsep_flush() FROM PUBLIC;
REVOKE ALL ON FUNCTION kvsep_compact() FROM PUBLIC;
REVOKE ALL ON FUNCTION kvsep_vlog_gc(float8) FROM PUBLIC;

-- Engine statistics.

CREATE FUNCTION kvsep_levels_info(
	OUT level int,
	OUT tables int,
	OUT size_bytes bigint,
	OUT target_bytes bigint,
	OUT keys bigint,
	OUT score float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_levels_info'
LANGUAGE C VOLATILE;

CREATE FUNCTION kvsep_tables_info(
	OUT table_id bigint,
	OUT level int,
	OUT size_bytes bigint,
	OUT keys bigint,
	OUT max_version bigint,
	OUT ingested boolean,
	OUT smallest text,
	OUT largest text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_tables_info'
LANGUAGE C VOLATILE;

CREATE FUNCTION kvsep_vlog_files_info(
	OUT file_id bigint,
	OUT state text,
	OUT size_bytes bigint,
	OUT entries bigint,
	OUT discard_bytes bigint,
	OUT discard_ratio float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_vlog_files_info'
LANGUAGE C VOLATILE;

CREATE FUNCTION kvsep_stats_info(
	OUT name text,
	OUT value bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_stats_info'
LANGUAGE C VOLATILE;

CREATE VIEW kvsep_levels AS
	SELECT level, tables, size_bytes, target_bytes, keys, score
	FROM kvsep_levels_info();

CREATE VIEW kvsep_tables AS
	SELECT table_id, level, size_bytes, keys, max_version, ingested, smallest, largest
	FROM kvsep_tables_info();

CREATE VIEW kvsep_vlog_files AS
	SELECT file_id, state, size_bytes, entries, discard_bytes, discard_ratio
	FROM kvsep_vlog_files_info();

CREATE VIEW kvsep_stats AS
	SELECT name, value
	FROM kvsep_stats_info();

-- Block cache effectiveness; hit_ratio is NULL before the first lookup.
CREATE VIEW kvsep_cache AS
	SELECT hits, misses,
		   CASE WHEN hits + misses > 0
				THEN hits::float8 / (hits + misses)::float8
		   END AS hit_ratio
	FROM (SELECT max(value) FILTER (WHERE name = 'block_cache_hits') AS hits,
				 max(value) FILTER (WHERE name = 'block_cache_misses') AS misses
		  FROM kvsep_stats_info()) AS s;

-- Table key bounds show stored key bytes: not for everyone.
REVOKE ALL ON FUNCTION kvsep_tables_info() FROM PUBLIC;
REVOKE ALL ON kvsep_tables FROM PUBLIC;

-- A table's entries as the engine stores them, and its decoders applied to
-- given bytes (for inspecting what is on disk).  Stored bytes are not for
-- everyone.
CREATE FUNCTION kvsep_raw_entries(tbl regclass, OUT key bytea, OUT value bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_raw_entries'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION kvsep_raw_out_of_line(tbl regclass, OUT key bytea, OUT value bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvsep_raw_out_of_line'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION kvsep_decode_key(tbl regclass, key bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'kvsep_sql_decode_key'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION kvsep_decode_row(tbl regclass, value bytea)
RETURNS int
AS 'MODULE_PATHNAME', 'kvsep_sql_decode_row'
LANGUAGE C STRICT STABLE;

REVOKE ALL ON FUNCTION kvsep_raw_entries(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION kvsep_raw_out_of_line(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION kvsep_decode_key(regclass, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION kvsep_decode_row(regclass, bytea) FROM PUBLIC;
