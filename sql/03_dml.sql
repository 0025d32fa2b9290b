-- INSERT, UPDATE, DELETE, RETURNING, COPY, large values.
CREATE FOREIGN TABLE events (
    id      bigint OPTIONS (key 'true'),
    kind    text,
    payload bytea
) SERVER kv;

INSERT INTO events VALUES (1, 'a', '\x01'), (2, 'b', NULL) RETURNING id, kind;
INSERT INTO events (id) VALUES (3);
SELECT id, kind, payload FROM events ORDER BY id;
-- an existing key
INSERT INTO events VALUES (2, 'again', NULL);
INSERT INTO events VALUES (2, 'again', NULL), (4, 'new', NULL) ON CONFLICT DO NOTHING;
SELECT id, kind FROM events ORDER BY id;
INSERT INTO events VALUES (5, 'x', NULL) ON CONFLICT (id) DO UPDATE SET kind = 'y';
INSERT INTO events VALUES (5, 'x', NULL) ON CONFLICT DO UPDATE SET kind = 'y';

-- UPDATE, also of the key
UPDATE events SET kind = 'B' WHERE id = 2 RETURNING *;
UPDATE events SET id = id + 100 WHERE id >= 3 RETURNING id, kind;
SELECT id, kind FROM events ORDER BY id;
UPDATE events SET id = 1 WHERE id = 2;   -- the new key exists
UPDATE events SET kind = kind || '!';
SELECT id, kind FROM events ORDER BY id;
-- keys are checked row by row, as with a unique index
UPDATE events SET id = id + 1;
-- moving every key: the scan does not see rows the UPDATE moved
UPDATE events SET id = id + 1000;
SELECT id, kind FROM events ORDER BY id;
UPDATE events SET id = id - 1000;
-- the same with point gets: 1 moves to 1001, and the get of 1001 (also
-- in the list) must not find the row just moved
UPDATE events SET id = id + 1000 WHERE id IN (1, 1001) RETURNING id;
UPDATE events SET id = id - 1000 WHERE id = 1001;

-- DELETE
DELETE FROM events WHERE id = 104 RETURNING id, kind, payload;
DELETE FROM events WHERE kind LIKE 'B%';
SELECT id, kind FROM events ORDER BY id;
DELETE FROM events;
SELECT count(*) FROM events;

-- COPY
COPY events FROM stdin;
10	copied	\\x0a0b
11	copied	\N
12	\N	\N
\.
SELECT id, kind, payload FROM events ORDER BY id;
COPY (SELECT * FROM events ORDER BY id) TO stdout;
COPY events FROM stdin;
10	dup	\N
\.

-- multi-row INSERT in batches
SET kvsep.batch_size = 7;
INSERT INTO events SELECT g, 'batch', NULL FROM generate_series(100, 199) g;
SELECT count(*), min(id), max(id) FROM events WHERE kind = 'batch';
RESET kvsep.batch_size;

-- large values go to the value log; they are detoasted before storing
CREATE TABLE src (id int, big text);
INSERT INTO src VALUES (1, repeat('abcdefghij', 100000)), (2, repeat('z', 3000000));
CREATE FOREIGN TABLE blobs (id int, big text, n int) SERVER kv;
INSERT INTO blobs SELECT id, big, length(big) FROM src;
SELECT id, length(big), n, md5(big) = (SELECT md5(big) FROM src s WHERE s.id = b.id) AS same
FROM blobs b ORDER BY id;
UPDATE blobs SET big = big || 'tail' WHERE id = 1;
SELECT id, length(big), right(big, 6) FROM blobs ORDER BY id;
DROP TABLE src;

-- an INSERT of a key above the table's largest makes no lookup; duplicates
-- are still found: in the same statement (the last key again, an earlier
-- one), against stored rows, after a BEFORE trigger wrote to the table,
-- and after a DELETE in the same transaction
CREATE FOREIGN TABLE seq_keys (id int, v text) SERVER kv;
INSERT INTO seq_keys SELECT g, 'a' FROM generate_series(1, 5) g;
INSERT INTO seq_keys SELECT g, 'b' FROM generate_series(6, 9) g UNION ALL SELECT 9, 'dup';
INSERT INTO seq_keys SELECT g, 'b' FROM generate_series(6, 9) g UNION ALL SELECT 7, 'dup';
INSERT INTO seq_keys VALUES (5, 'the largest');
INSERT INTO seq_keys VALUES (6, 'above'), (8, 'above'), (7, 'between');
SELECT id, v FROM seq_keys ORDER BY id;
CREATE FUNCTION seq_keys_ahead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 11 THEN
        INSERT INTO seq_keys VALUES (12, 'by the trigger');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ahead BEFORE INSERT ON seq_keys FOR EACH ROW EXECUTE FUNCTION seq_keys_ahead();
INSERT INTO seq_keys VALUES (10, 'x'), (11, 'y'), (12, 'z');
INSERT INTO seq_keys VALUES (10, 'x'), (11, 'y');
SELECT id, v FROM seq_keys WHERE id >= 10 ORDER BY id;
DROP TRIGGER ahead ON seq_keys;
DROP FUNCTION seq_keys_ahead();
BEGIN;
DELETE FROM seq_keys WHERE id >= 11;
INSERT INTO seq_keys VALUES (11, 'again'), (12, 'again');
INSERT INTO seq_keys VALUES (12, 'twice');
ROLLBACK;
SELECT id, v FROM seq_keys WHERE id >= 10 ORDER BY id;
DROP FOREIGN TABLE seq_keys;
