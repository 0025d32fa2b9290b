-- Values stored out of line: a large value of a non-key variable-length
-- column lives in the row's companion entry and is read only when used.
SHOW kvsep.out_of_line_size;
CREATE FOREIGN TABLE ool (
    id int,
    tag text,
    b bytea,
    t text,
    arr int[],
    j jsonb
) SERVER kv;
-- rows 1-10 have large b and t, 11-20 small ones; arr is always large but
-- arrays stay in the row
INSERT INTO ool
SELECT g, 'tag' || g,
       CASE WHEN g <= 10 THEN convert_to(repeat(md5(g::text), 200), 'UTF8') ELSE '\x0102'::bytea END,
       CASE WHEN g <= 10 THEN repeat('t' || g, 1000) ELSE 'small' END,
       array_fill(g, ARRAY[1000]),
       jsonb_build_object('g', g)
FROM generate_series(1, 20) g;
CREATE TABLE ool_heap AS SELECT * FROM ool;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- every row's value holds its columns, out-of-line ones included
SELECT count(*) FILTER (WHERE kvsep_decode_row('ool', value) = 5) AS rows_with_5_columns
FROM kvsep_raw_entries('ool');
-- the values read back exactly, through any path
SELECT count(*) FROM ool o JOIN ool_heap h USING (id)
WHERE o.b = h.b AND o.t = h.t AND o.arr = h.arr AND o.j = h.j AND o.tag = h.tag;
SELECT id, length(b), octet_length(t), md5(b) = md5(convert_to(repeat(md5(id::text), 200), 'UTF8')) AS same
FROM ool WHERE id IN (1, 10, 11) ORDER BY id;
SELECT md5(string_agg(t, ',' ORDER BY md5(t))) = (SELECT md5(string_agg(t, ',' ORDER BY md5(t))) FROM ool_heap) AS sorted_same
FROM ool;
SELECT count(DISTINCT b) FROM ool;
SELECT id FROM ool WHERE b = (SELECT b FROM ool_heap WHERE id = 3);
-- sizes come without reading the values; using them reads them
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, length(b), octet_length(t), pg_column_size(b) FROM ool WHERE id <= 10;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, md5(b) FROM ool WHERE id <= 10;
-- a row's values are read together: two columns, one read per row
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, md5(b), md5(t) FROM ool WHERE id <= 10;
-- a value kept past its row (a plpgsql variable, a cursor)
DO $$
DECLARE x text; r record;
BEGIN
    FOR r IN SELECT id, t FROM ool ORDER BY id LOOP
        IF r.id = 2 THEN x := r.t; END IF;
    END LOOP;
    RAISE NOTICE 'kept: % bytes, same %', length(x), x = repeat('t2', 1000);
END $$;
BEGIN;
DECLARE c CURSOR FOR SELECT id, md5(b) FROM ool ORDER BY id;
FETCH 2 FROM c;
CREATE TEMP TABLE fetched AS SELECT 1;
FETCH 1 FROM c;
COMMIT;
-- UPDATE of a small column keeps the large values
UPDATE ool SET tag = 'updated' WHERE id = 1;
SELECT tag, md5(b) = (SELECT md5(b) FROM ool_heap WHERE id = 1) AS b_same, t = repeat('t1', 1000) AS t_same
FROM ool WHERE id = 1;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- large -> small drops the companion, small -> large makes one
UPDATE ool SET b = '\x00', t = 'now small' WHERE id = 2;
UPDATE ool SET t = repeat('x', 5000) WHERE id = 11;
SELECT id, length(b), length(t) FROM ool WHERE id IN (2, 11) ORDER BY id;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- one large column of two: the other one moves into the row
UPDATE ool SET b = '\xab' WHERE id = 3;
SELECT length(b), t = repeat('t3', 1000) AS t_same FROM ool WHERE id = 3;
-- a key change moves the companion with the row
UPDATE ool SET id = 100 WHERE id = 4;
SELECT id, md5(t) = md5(repeat('t4', 1000)) AS same FROM ool WHERE id IN (4, 100);
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- DELETE removes the companion; RETURNING still sees the values
DELETE FROM ool WHERE id = 5 RETURNING id, length(b), md5(t) = md5(repeat('t5', 1000)) AS same;
DELETE FROM ool WHERE id = 6;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- rolled back writes leave no companion behind
BEGIN;
INSERT INTO ool VALUES (200, 'x', NULL, repeat('r', 4000), NULL, NULL);
SAVEPOINT s;
INSERT INTO ool VALUES (201, 'y', NULL, repeat('s', 4000), NULL, NULL);
SELECT count(*) AS companions_in_txn FROM kvsep_raw_out_of_line('ool');
ROLLBACK TO SAVEPOINT s;
SELECT id, length(t) FROM ool WHERE id >= 200;
ROLLBACK;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- the threshold is a setting; rows of either layout are read alike
SET kvsep.out_of_line_size = 0;
INSERT INTO ool VALUES (300, 'inline', NULL, repeat('i', 9000), NULL, NULL);
SET kvsep.out_of_line_size = '100kB';
INSERT INTO ool VALUES (301, 'inline', NULL, repeat('j', 9000), NULL, NULL);
RESET kvsep.out_of_line_size;
INSERT INTO ool VALUES (302, 'ool', NULL, repeat('k', 9000), NULL, NULL);
SELECT id, length(t), substr(t, 1, 3) FROM ool WHERE id >= 300 ORDER BY id;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool');
-- dropping an out-of-line column: later out-of-line columns still read
ALTER FOREIGN TABLE ool DROP COLUMN b;
SELECT id, md5(t) = md5(repeat('t' || id, 1000)) AS same FROM ool WHERE id BETWEEN 7 AND 10 ORDER BY id;
-- a scan reuses one row's out-of-line datums for the next row: nodes that
-- keep a row (a window's previous row, a nested loop's outer row while
-- the inner scan runs) still read their own
SELECT id, lag(t) OVER (ORDER BY id) = repeat('t' || (id - 1), 1000) AS lag_ok,
       t = repeat('t' || id, 1000) AS t_ok
FROM ool WHERE id BETWEEN 7 AND 10 ORDER BY id;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT a.id, b.id, a.t = b.t AS same
FROM ool a JOIN ool b ON a.t = b.t
WHERE a.id BETWEEN 7 AND 9 AND b.id BETWEEN 7 AND 9 ORDER BY a.id;
RESET enable_hashjoin;
RESET enable_mergejoin;
ALTER FOREIGN TABLE ool ADD COLUMN extra text;
UPDATE ool SET extra = repeat('e', 3000) WHERE id = 7;
SELECT id, length(extra), md5(t) = md5(repeat('t' || id, 1000)) AS same FROM ool WHERE id IN (7, 8) ORDER BY id;
ANALYZE ool;
-- out to a heap table and back in
CREATE TABLE ool_copy AS SELECT * FROM ool;
TRUNCATE ool;
SELECT count(*) AS companions_after_truncate FROM kvsep_raw_out_of_line('ool');
INSERT INTO ool SELECT * FROM ool_copy;
SELECT count(*), sum(length(t)) FROM ool;
SELECT count(*) FROM ool o JOIN ool_copy c USING (id) WHERE o.t = c.t AND o.extra IS NOT DISTINCT FROM c.extra;
-- from one kvsep table into another (batched inserts), in both orders
CREATE FOREIGN TABLE ool2 (id int, tag text, arr int[], j jsonb, t text, extra text) SERVER kv;
INSERT INTO ool2 (id, tag, arr, j, t, extra) SELECT id, tag, arr, j, t, extra FROM ool ORDER BY id DESC;
SELECT count(*) AS companions FROM kvsep_raw_out_of_line('ool2');
SELECT count(*) FROM ool o JOIN ool2 c USING (id) WHERE o.t = c.t AND o.extra IS NOT DISTINCT FROM c.extra;
-- whole-row references, RETURNING, COPY TO and row triggers see the values
SELECT to_jsonb(c) = to_jsonb(o) AS same_json, length(to_jsonb(c)::text) > 3000 AS whole
FROM ool2 c JOIN ool o USING (id) WHERE id = 10;
SELECT count(*) FROM ool2 c WHERE c = c;
UPDATE ool2 SET tag = 'r' WHERE id = 10 RETURNING id, length(t), md5(t) = md5(repeat('t10', 1000)) AS same;
INSERT INTO ool2 (id, t) VALUES (400, repeat('n', 3000)) RETURNING id, length(t), left(t, 2);
COPY (SELECT id, t FROM ool2 WHERE id IN (10, 400) ORDER BY id) TO PROGRAM 'cat > ool_copy.txt';
CREATE TEMP TABLE copied (id int, t text);
COPY copied FROM PROGRAM 'cat ool_copy.txt && rm ool_copy.txt';
SELECT id, length(t), t = repeat('t10', 1000) AS t10 FROM copied ORDER BY id;
-- a scan in key order reads companions with a cursor, skipping rows without
SELECT id, md5(t) FROM ool2 WHERE id BETWEEN 8 AND 12 ORDER BY id DESC;
SELECT id, md5(t) FROM ool2 WHERE id IN (12, 9, 300, 7) ORDER BY id;
-- row triggers see the values of deleted rows
CREATE TABLE seen (id int, len int, same bool);
CREATE FUNCTION note_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seen VALUES (OLD.id, length(OLD.t), OLD.t = repeat('t' || OLD.id, 1000));
    RETURN NULL;
END $$;
CREATE TRIGGER ool2_deleted AFTER DELETE ON ool2 FOR EACH ROW EXECUTE FUNCTION note_row();
DELETE FROM ool2 WHERE id IN (9, 10);
SELECT * FROM seen ORDER BY id;
DROP TABLE seen, copied;
DROP FUNCTION note_row() CASCADE;
DROP FOREIGN TABLE ool2;
DROP TABLE ool_heap, ool_copy, fetched;
DROP FOREIGN TABLE ool;
-- bad settings
SET kvsep.out_of_line_size = -1;
