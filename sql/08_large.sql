-- Large transactions: far more than the memtables hold, committed at once.
CREATE FOREIGN TABLE big (id bigint, v text) SERVER kv;
BEGIN;
INSERT INTO big SELECT g, 'row ' || g || repeat('.', 80) FROM generate_series(1, 300000) g;
SELECT count(*) FROM big;
COMMIT;
SELECT count(*), min(id), max(id) FROM big;
SELECT v FROM big WHERE id = 123456;
SELECT count(*) > 0 AS ingested FROM kvsep_tables WHERE ingested;
-- a large transaction that rolls back leaves nothing
BEGIN;
INSERT INTO big SELECT g, 'gone' FROM generate_series(300001, 500000) g;
ROLLBACK;
SELECT count(*) FROM big;
-- a large update of every row, and a delete
UPDATE big SET v = 'updated' WHERE id % 2 = 0;
SELECT count(*) FILTER (WHERE v = 'updated') AS updated, count(*) AS total FROM big;
DELETE FROM big WHERE id > 1000;
SELECT count(*) FROM big;
