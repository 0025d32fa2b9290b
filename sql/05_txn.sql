-- One engine transaction per PostgreSQL transaction.
CREATE FOREIGN TABLE acct (id int, balance int) SERVER kv;
INSERT INTO acct VALUES (1, 100), (2, 100);

BEGIN;
UPDATE acct SET balance = balance - 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 2;
SELECT * FROM acct ORDER BY id;   -- own writes are visible
ROLLBACK;
SELECT * FROM acct ORDER BY id;

BEGIN;
INSERT INTO acct VALUES (3, 1);
SAVEPOINT s1;
INSERT INTO acct VALUES (4, 1);
UPDATE acct SET balance = 0 WHERE id = 1;
SAVEPOINT s2;
DELETE FROM acct WHERE id = 2;
SELECT * FROM acct ORDER BY id;
ROLLBACK TO s2;
SELECT * FROM acct ORDER BY id;
ROLLBACK TO s1;
SELECT * FROM acct ORDER BY id;
RELEASE s1;
INSERT INTO acct VALUES (5, 5);
COMMIT;
SELECT * FROM acct ORDER BY id;

-- an error inside a savepoint, then carrying on
BEGIN;
INSERT INTO acct VALUES (6, 6);
SAVEPOINT s;
INSERT INTO acct VALUES (1, 0);   -- duplicate key
ROLLBACK TO s;
INSERT INTO acct VALUES (7, 7);
COMMIT;
SELECT * FROM acct ORDER BY id;

-- an error aborts the whole transaction
BEGIN;
INSERT INTO acct VALUES (8, 8);
INSERT INTO acct VALUES (1, 0);
COMMIT;
SELECT count(*) FROM acct WHERE id = 8;

-- a statement that fails leaves nothing behind
INSERT INTO acct VALUES (9, 9), (1, 1);
SELECT count(*) FROM acct WHERE id = 9;

-- PREPARE TRANSACTION is refused once a kvsep table was written
BEGIN;
INSERT INTO acct VALUES (10, 10);
PREPARE TRANSACTION 'p1';
SELECT count(*) FROM acct WHERE id = 10;
BEGIN;
SELECT count(*) FROM acct;
PREPARE TRANSACTION 'p2';
ROLLBACK PREPARED 'p2';

-- read-only transactions
BEGIN READ ONLY;
SELECT count(*) FROM acct;
INSERT INTO acct VALUES (11, 11);
ROLLBACK;

-- (concurrent sessions and isolation levels: specs/)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sum(balance) FROM acct;
COMMIT;

-- TRUNCATE is transactional
BEGIN;
TRUNCATE acct;
SELECT count(*) FROM acct;
INSERT INTO acct VALUES (100, 100);
SELECT * FROM acct;
ROLLBACK;
SELECT * FROM acct ORDER BY id;
BEGIN;
SAVEPOINT s;
TRUNCATE acct;
ROLLBACK TO s;
SELECT count(*) FROM acct;
COMMIT;
TRUNCATE acct;
SELECT count(*) FROM acct;
INSERT INTO acct VALUES (1, 1);
SELECT * FROM acct;
