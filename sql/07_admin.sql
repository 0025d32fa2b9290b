-- Administration functions and views.
CREATE FOREIGN TABLE adm (id int, v text) SERVER kv;
INSERT INTO adm SELECT g, repeat('v', 2000) FROM generate_series(1, 200) g;
SELECT kvsep_flush();
SELECT count(*) > 0 AS has_tables FROM kvsep_tables;
SELECT count(*) > 0 AS has_levels FROM kvsep_levels;
SELECT count(*) > 0 AS has_vlog FROM kvsep_vlog_files;
SELECT kvsep_compact();
SELECT count(DISTINCT level) AS levels_in_use FROM kvsep_tables;
DELETE FROM adm;
SELECT kvsep_compact();
SELECT kvsep_vlog_gc(0.1) IS NOT NULL AS ran;
SELECT kvsep_vlog_gc(0);
SELECT kvsep_vlog_gc(1.5);
SELECT name FROM kvsep_stats WHERE name IN ('writes', 'memtable_flushes', 'compactions') ORDER BY name;
SELECT hits >= 0 AND misses >= 0 AS ok FROM kvsep_cache;
SELECT state FROM kvsep_status();

-- state-changing functions are not for everyone
CREATE ROLE kv_user LOGIN;
GRANT USAGE ON FOREIGN SERVER kv TO kv_user;
GRANT SELECT, INSERT ON adm TO kv_user;
GRANT CREATE ON SCHEMA public TO kv_user;
SET ROLE kv_user;
SELECT kvsep_flush();
SELECT kvsep_compact();
SELECT count(*) FROM kvsep_tables;
SELECT state FROM kvsep_status();
SELECT count(*) FROM kvsep_raw_entries('adm');
SELECT count(*) FROM kvsep_raw_out_of_line('adm');
-- but a plain user can use kvsep tables, and create them
INSERT INTO adm VALUES (1, 'from kv_user');
SELECT * FROM adm;
INSERT INTO adm VALUES (2, repeat('large ', 1000));
SELECT id, length(v), left(v, 5) FROM adm WHERE id = 2;
CREATE FOREIGN TABLE mine (id int) SERVER kv;
INSERT INTO mine VALUES (1);
SELECT * FROM mine;
DROP FOREIGN TABLE mine;
RESET ROLE;
DROP FOREIGN TABLE adm;
REVOKE USAGE ON FOREIGN SERVER kv FROM kv_user;
REVOKE CREATE ON SCHEMA public FROM kv_user;
DROP ROLE kv_user;
