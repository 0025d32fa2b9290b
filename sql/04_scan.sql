-- Planning and EXPLAIN: point gets, ranges, IN lists, order, key-only
-- scans, joins on the key.
CREATE FOREIGN TABLE items (id int, grp int, label text) SERVER kv;
INSERT INTO items SELECT g, g % 10, 'item ' || g FROM generate_series(1, 1000) g;
CREATE FOREIGN TABLE pairs (a int OPTIONS (key 'true'), b int OPTIONS (key 'true'), v text)
SERVER kv;
INSERT INTO pairs SELECT a, b, a || ':' || b FROM generate_series(1, 20) a, generate_series(1, 20) b;

EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id = 42;
SELECT * FROM items WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id BETWEEN 10 AND 13;
SELECT * FROM items WHERE id BETWEEN 10 AND 13;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id IN (5, 3, 900, 3);
SELECT * FROM items WHERE id IN (5, 3, 900, 3);
SELECT * FROM items WHERE id = ANY (ARRAY[7, 8]);
-- a qual that is not on the key is only a filter
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE grp = 3 AND id < 30;
SELECT * FROM items WHERE grp = 3 AND id < 30;

-- ORDER BY the key needs no sort; LIMIT stops the scan early
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY id LIMIT 3;
SELECT * FROM items ORDER BY id LIMIT 3;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY id DESC LIMIT 3;
SELECT * FROM items ORDER BY id DESC LIMIT 3;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id > 990 ORDER BY id DESC;
SELECT * FROM items WHERE id > 990 ORDER BY id DESC;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY grp LIMIT 1;
-- composite keys: prefixes of the key
EXPLAIN (COSTS OFF) SELECT * FROM pairs WHERE a = 3 ORDER BY a, b;
SELECT * FROM pairs WHERE a = 3 AND b <= 3 ORDER BY a, b;
EXPLAIN (COSTS OFF) SELECT * FROM pairs WHERE a = 3 AND b = 4;
EXPLAIN (COSTS OFF) SELECT * FROM pairs WHERE b = 4;
SELECT * FROM pairs WHERE b = 4 AND a < 3;
EXPLAIN (COSTS OFF) SELECT * FROM pairs ORDER BY a DESC, b DESC LIMIT 2;
SELECT * FROM pairs ORDER BY a DESC, b DESC LIMIT 2;

-- key-only: counting or projecting the key reads no row values
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM items;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT id FROM items WHERE id < 5;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT label FROM items WHERE id < 5;

-- a join on the key: one get per outer row
CREATE TABLE wanted (id int);
INSERT INTO wanted VALUES (10), (20), (30), (5000);
ANALYZE wanted;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT w.id, i.label FROM wanted w JOIN items i ON i.id = w.id;
SELECT w.id, i.label FROM wanted w JOIN items i ON i.id = w.id ORDER BY w.id;
SELECT w.id, i.label FROM wanted w LEFT JOIN items i ON i.id = w.id ORDER BY w.id;
RESET enable_hashjoin;
RESET enable_mergejoin;
-- a parameter
PREPARE get_item(int) AS SELECT label FROM items WHERE id = $1;
EXECUTE get_item(77);
EXECUTE get_item(-1);
DEALLOCATE get_item;

-- text keys: ranges and order only with the C collation
CREATE FOREIGN TABLE names_c (n text COLLATE "C", v int) SERVER kv;
CREATE FOREIGN TABLE names_d (n text COLLATE "und-x-icu", v int) SERVER kv;
INSERT INTO names_c VALUES ('b', 1), ('a', 2), ('B', 3);
INSERT INTO names_d VALUES ('b', 1), ('a', 2), ('B', 3);
EXPLAIN (COSTS OFF) SELECT * FROM names_c WHERE n > 'a' ORDER BY n;
EXPLAIN (COSTS OFF) SELECT * FROM names_d WHERE n > 'a' ORDER BY n;
SELECT * FROM names_d WHERE n > 'a' ORDER BY n;
EXPLAIN (COSTS OFF) SELECT * FROM names_d WHERE n = 'B';
SELECT * FROM names_d WHERE n = 'B';

-- ANALYZE samples through an iterator
ANALYZE items;
SELECT reltuples FROM pg_class WHERE relname = 'items';

-- keys are decoded only when a key column is used above the scan or by a
-- qual left to the executor; each of these needs them, or none of them
SELECT count(*), sum(length(label)) FROM items WHERE id BETWEEN 100 AND 199;
SELECT count(*) FROM items WHERE id % 7 = 0 AND id < 100;
SELECT grp, count(*) FROM items WHERE id <= 20 GROUP BY grp ORDER BY grp;
SELECT label FROM items WHERE id > 995 ORDER BY id DESC;
SELECT i.label, w.id FROM wanted w JOIN items i ON i.id = w.id ORDER BY w.id;
SELECT i.label FROM wanted w JOIN items i ON i.id = w.id ORDER BY i.label;
SELECT t FROM items t WHERE id = 3;
SELECT sum(b) FROM pairs WHERE a = 4;
SELECT count(*) FROM pairs WHERE a = 4 AND b > 15;
BEGIN;
UPDATE items SET label = label || '!' WHERE id BETWEEN 1 AND 3 RETURNING id, label;
DELETE FROM items WHERE id = 2 RETURNING *;
ROLLBACK;
