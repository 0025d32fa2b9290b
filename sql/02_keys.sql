-- Key encodings: order, equality and ranges for every supported key type.
CREATE FOREIGN TABLE k_int2 (k int2, v text) SERVER kv;
CREATE FOREIGN TABLE k_int4 (k int4, v text) SERVER kv;
CREATE FOREIGN TABLE k_int8 (k int8, v text) SERVER kv;
INSERT INTO k_int2 VALUES (-32768, 'min'), (-1, 'm1'), (0, 'z'), (1, 'p1'), (32767, 'max');
INSERT INTO k_int4 VALUES (-2147483648, 'min'), (-1, 'm1'), (0, 'z'), (1, 'p1'), (2147483647, 'max');
INSERT INTO k_int8 VALUES (-9223372036854775808, 'min'), (-1, 'm1'), (0, 'z'), (1, 'p1'),
  (9223372036854775807, 'max');
SELECT * FROM k_int2 ORDER BY k;
SELECT * FROM k_int4 ORDER BY k DESC;
SELECT * FROM k_int8 WHERE k >= -1 AND k < 9223372036854775807 ORDER BY k;
-- cross-type integer comparisons
SELECT * FROM k_int2 WHERE k = 1::int8;
SELECT * FROM k_int2 WHERE k < 100000::int8 AND k > -100000 ORDER BY k;
SELECT * FROM k_int8 WHERE k = 0::int2;
SELECT * FROM k_int4 WHERE k IN (1, -1, 7) ORDER BY k;

CREATE FOREIGN TABLE k_float (k float8, v text) SERVER kv;
INSERT INTO k_float VALUES ('-Infinity', 'ninf'), (-1.5, 'neg'), (0, 'zero'), (1e-300, 'tiny'),
  (2.25, 'pos'), ('Infinity', 'inf'), ('NaN', 'nan');
SELECT * FROM k_float ORDER BY k;
SELECT * FROM k_float WHERE k > 0 ORDER BY k;
INSERT INTO k_float VALUES ('-0', 'negative zero');  -- equal to 0
SELECT * FROM k_float WHERE k = 0;
CREATE FOREIGN TABLE k_float4 (k float4, v text) SERVER kv;
INSERT INTO k_float4 VALUES (1.5, 'a'), (-3.25, 'b');
SELECT * FROM k_float4 WHERE k < 2::float8 ORDER BY k;

CREATE FOREIGN TABLE k_num (k numeric, v text) SERVER kv;
INSERT INTO k_num VALUES ('-Infinity', 'ninf'), (-1000.5, 'a'), (-1.25, 'b'), (-0.001, 'c'),
  (0, 'zero'), (0.00123, 'd'), (1.5, 'e'), (12300, 'f'), (123456789012345678901234567890.123, 'g'),
  ('Infinity', 'inf'), ('NaN', 'nan');
SELECT * FROM k_num ORDER BY k;
SELECT * FROM k_num WHERE k = 1.50;   -- 1.50 = 1.5: the same key
INSERT INTO k_num VALUES (1.500, 'dup');
SELECT k, v FROM k_num WHERE k BETWEEN -2 AND 2 ORDER BY k DESC;

CREATE FOREIGN TABLE k_bool (k bool, v text) SERVER kv;
INSERT INTO k_bool VALUES (true, 't'), (false, 'f');
SELECT * FROM k_bool ORDER BY k;

CREATE FOREIGN TABLE k_text (k text COLLATE "C", v int) SERVER kv;
INSERT INTO k_text VALUES ('', 0), ('a', 1), ('a b', 2), ('ab', 3), ('b', 4), ('é', 5), ('B', 6);
SELECT * FROM k_text ORDER BY k;
SELECT * FROM k_text WHERE k >= 'a' AND k < 'b' ORDER BY k;
SELECT * FROM k_text WHERE k LIKE 'a%' ORDER BY k;
CREATE FOREIGN TABLE k_varchar (k varchar(10), v int) SERVER kv;  -- default collation
INSERT INTO k_varchar VALUES ('x', 1), ('y', 2);
SELECT * FROM k_varchar WHERE k = 'y';
SELECT * FROM k_varchar ORDER BY k;

CREATE FOREIGN TABLE k_bytea (k bytea, v int) SERVER kv;
INSERT INTO k_bytea VALUES ('\x', 0), ('\x00', 1), ('\x0000', 2), ('\x0001', 3), ('\x01', 4),
  ('\xff', 5), ('\xff00', 6);
SELECT * FROM k_bytea ORDER BY k;
SELECT * FROM k_bytea WHERE k > '\x00' AND k <= '\xff' ORDER BY k;

CREATE FOREIGN TABLE k_uuid (k uuid, v int) SERVER kv;
INSERT INTO k_uuid VALUES ('00000000-0000-0000-0000-000000000001', 1),
  ('ffffffff-0000-0000-0000-000000000000', 2), ('10000000-0000-0000-0000-000000000000', 3);
SELECT * FROM k_uuid ORDER BY k;

CREATE FOREIGN TABLE k_time (d date, ts timestamp, tz timestamptz, v int) SERVER kv;
CREATE FOREIGN TABLE k_ts (ts timestamp, v int) SERVER kv;
CREATE FOREIGN TABLE k_tz (tz timestamptz, v int) SERVER kv;
INSERT INTO k_time VALUES ('-infinity', '2020-01-01', '2020-01-01 00:00+00', 1),
  ('1999-12-31', '2020-01-01', '2020-01-01 00:00+00', 2), ('2000-01-01', NULL, NULL, 3),
  ('infinity', NULL, NULL, 4);
SELECT d, v FROM k_time ORDER BY d;
SELECT d, v FROM k_time WHERE d >= '2000-01-01' ORDER BY d;
INSERT INTO k_ts VALUES ('2000-01-01 00:00:00.000001', 2), ('1970-01-01', 1), ('infinity', 3);
SELECT * FROM k_ts ORDER BY ts DESC;
INSERT INTO k_tz VALUES ('2000-01-01 00:00+02', 1), ('2000-01-01 00:00+00', 2);
SELECT v FROM k_tz ORDER BY tz;

-- composite keys: column order, prefixes, ranges on the next column
CREATE FOREIGN TABLE k_comp (
    tenant int OPTIONS (key 'true'),
    name text OPTIONS (key 'true') COLLATE "C",
    seq bigint OPTIONS (key 'true'),
    payload text) SERVER kv;
INSERT INTO k_comp SELECT t, n, s, t || '/' || n || '/' || s
FROM generate_series(1, 3) t, unnest(ARRAY['a', 'b', 'c']) n, generate_series(1, 3) s;
SELECT count(*) FROM k_comp;
SELECT payload FROM k_comp WHERE tenant = 2 ORDER BY tenant, name, seq;
SELECT payload FROM k_comp WHERE tenant = 2 AND name = 'b' AND seq > 1 ORDER BY tenant, name, seq;
SELECT payload FROM k_comp WHERE tenant = 3 AND name IN ('c', 'a') AND seq = 2;
SELECT payload FROM k_comp ORDER BY tenant DESC, name DESC, seq DESC LIMIT 4;
INSERT INTO k_comp VALUES (1, 'a', 1, 'dup');

-- NULL keys are refused
INSERT INTO k_int4 VALUES (NULL, 'x');
INSERT INTO k_comp VALUES (1, NULL, 1, 'x');
-- a NULL in a key comparison matches nothing
SELECT * FROM k_int4 WHERE k = NULL;
SELECT * FROM k_int4 WHERE k IN (NULL);
