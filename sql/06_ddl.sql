-- Table definitions change; stored rows follow.
CREATE FOREIGN TABLE t (id int, a text, b int) SERVER kv;
INSERT INTO t VALUES (1, 'one', 10), (2, 'two', 20);
ALTER FOREIGN TABLE t ADD COLUMN c text;
SELECT * FROM t ORDER BY id;
INSERT INTO t VALUES (3, 'three', 30, 'new');
ALTER FOREIGN TABLE t DROP COLUMN a;
SELECT * FROM t ORDER BY id;
UPDATE t SET c = 'upd' WHERE id = 1;
SELECT * FROM t ORDER BY id;
ALTER FOREIGN TABLE t ADD COLUMN a text;   -- a new column of the same name
SELECT * FROM t ORDER BY id;
ALTER FOREIGN TABLE t RENAME COLUMN b TO bee;
ALTER FOREIGN TABLE t RENAME TO t2;
SELECT * FROM t2 ORDER BY id;

-- what stored rows could not follow is refused
ALTER FOREIGN TABLE t2 ALTER COLUMN bee TYPE bigint;
ALTER FOREIGN TABLE t2 DROP COLUMN id;
ALTER FOREIGN TABLE t2 ALTER COLUMN c OPTIONS (ADD key 'true');
ALTER FOREIGN TABLE t2 ADD COLUMN k2 int OPTIONS (key 'true');
ALTER FOREIGN TABLE t2 ALTER COLUMN c OPTIONS (ADD nonsense 'x');
SELECT * FROM t2 ORDER BY id;

-- DROP releases the table's prefix, transactionally
CREATE FOREIGN TABLE d (id int, v text) SERVER kv;
INSERT INTO d VALUES (1, 'x');
SELECT count(*) FROM kvsep_relations WHERE relid = 'd'::regclass;
BEGIN;
DROP FOREIGN TABLE d;
ROLLBACK;
SELECT * FROM d;
CREATE TEMP TABLE d_oid AS SELECT 'd'::regclass::oid AS relid;
DROP FOREIGN TABLE d;
SELECT count(*) FROM kvsep_relations WHERE relid = (SELECT relid FROM d_oid);
-- a new table never sees an old one's data
CREATE FOREIGN TABLE d (id int, v text) SERVER kv;
SELECT * FROM d;

-- a table in a schema dropped with CASCADE
CREATE SCHEMA s;
CREATE FOREIGN TABLE s.x (id int) SERVER kv;
INSERT INTO s.x VALUES (1);
DROP SCHEMA s CASCADE;
SELECT count(*) FROM kvsep_relations WHERE relid NOT IN (SELECT oid FROM pg_class);
