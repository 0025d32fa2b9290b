-- The stored-bytes decoders: raw entries decode back to the rows, and
-- damaged keys and rows (random mutations of real ones) end in
-- data_corrupted errors, never in a crash or another error.
CREATE FOREIGN TABLE dec (
    k1 int2 OPTIONS (key 'true'),
    k2 int4 OPTIONS (key 'true'),
    k3 int8 OPTIONS (key 'true'),
    k4 bool OPTIONS (key 'true'),
    k5 float4 OPTIONS (key 'true'),
    k6 float8 OPTIONS (key 'true'),
    k7 numeric OPTIONS (key 'true'),
    k8 text OPTIONS (key 'true') COLLATE "C",
    k9 varchar(20) OPTIONS (key 'true') COLLATE "C",
    k10 bytea OPTIONS (key 'true'),
    k11 uuid OPTIONS (key 'true'),
    k12 date OPTIONS (key 'true'),
    k13 timestamp OPTIONS (key 'true'),
    k14 timestamptz OPTIONS (key 'true'),
    a int4,
    b text,
    gone text,
    c bytea,
    d numeric,
    e float8
) SERVER kv;
INSERT INTO dec VALUES
  (1, -2, 3, true, 1.5, -2.25, 123.456, 'abc', 'x', '\x00ff00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2024-02-29', '2024-02-29 12:34:56', '2024-02-29 12:34:56+00', 7, 'seven', 'g', '\x01', 7.7, 0.5),
  (-32768, 2147483647, -9223372036854775808, false, 'NaN', '-Infinity', -0.000001, '', '', '',
   '00000000-0000-0000-0000-000000000000', '-infinity', 'infinity', '1999-12-31 23:59:59.999999+05',
   NULL, NULL, NULL, NULL, NULL, NULL),
  (32767, 0, 9223372036854775807, true, '-Infinity', 'NaN', 'NaN', repeat('z', 300), 'abcdefghij',
   '\xffffffff', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '4713-01-01 BC', '1970-01-01', 'epoch',
   -1, repeat('long ', 200), 'gone too', '\x00', 'Infinity', 'NaN'),
  (0, 0, 0, false, 0, 0, 0, 'a' || chr(1) || 'b', 'zz', '\x00', '12345678-1234-1234-1234-123456789abc',
   '2000-01-01', '2000-01-01', '2000-01-01 00:00:00+00', 0, '', NULL, '', -1e100, -0.0);
ALTER FOREIGN TABLE dec DROP COLUMN gone;
ALTER FOREIGN TABLE dec ADD COLUMN f int8;
INSERT INTO dec VALUES (5, 5, 5, true, 5, 5, 5e-50, 'five', 'five', '\x05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15',
   '2005-05-05', '2005-05-05', '2005-05-05 05:05:05+00', 5, 'five', '\x05', 5, 5, 5);
-- a row with values stored out of line (row format 2)
INSERT INTO dec VALUES (6, 6, 6, true, 6, 6, 6, 'six', 'six', '\x06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a16',
   '2006-06-06', '2006-06-06', '2006-06-06 06:06:06+00', 6, repeat('six ', 1000), decode(repeat('06', 3000), 'hex'), 6, 6, 6);
SELECT count(*) AS out_of_line_rows FROM kvsep_raw_out_of_line('dec');
-- every stored entry decodes back to its row's key, and its value holds
-- the row's non-null columns
SELECT kvsep_decode_key('dec', key) AS key, kvsep_decode_row('dec', value) AS columns
FROM kvsep_raw_entries('dec') ORDER BY key;
SELECT count(*) FROM dec;
-- random damage: flipped bytes, truncation, extra bytes, on real entries
CREATE TEMP TABLE fuzz_result (what text, ok int, corrupt int, other int);
DO $$
DECLARE
    seeds bytea[];
    b bytea;
    n int;
    ok int;
    bad int;
    other int;
    what text;
BEGIN
    FOREACH what IN ARRAY ARRAY['key', 'row'] LOOP
        PERFORM setseed(0.25);
        IF what = 'key' THEN
            SELECT array_agg(key ORDER BY key) INTO seeds FROM kvsep_raw_entries('dec');
        ELSE
            SELECT array_agg(value ORDER BY key) INTO seeds FROM kvsep_raw_entries('dec');
        END IF;
        ok := 0; bad := 0; other := 0;
        FOR i IN 1..3000 LOOP
            b := seeds[1 + floor(random() * array_length(seeds, 1))::int];
            FOR j IN 1..(1 + floor(random() * 3))::int LOOP
                n := floor(random() * 4)::int;
                IF n <= 1 AND length(b) > 0 THEN
                    b := set_byte(b, floor(random() * length(b))::int, floor(random() * 256)::int);
                ELSIF n = 2 THEN
                    b := substr(b, 1, floor(random() * (length(b) + 1))::int);
                ELSE
                    b := b || decode(lpad(to_hex(floor(random() * 256)::int), 2, '0'), 'hex');
                END IF;
            END LOOP;
            BEGIN
                IF what = 'key' THEN
                    PERFORM kvsep_decode_key('dec', b);
                ELSE
                    PERFORM kvsep_decode_row('dec', b);
                END IF;
                ok := ok + 1;
            EXCEPTION
                WHEN data_corrupted THEN
                    bad := bad + 1;
                WHEN OTHERS THEN
                    other := other + 1;
                    RAISE NOTICE '% %: % (%)', what, b, SQLERRM, SQLSTATE;
            END;
        END LOOP;
        INSERT INTO fuzz_result VALUES (what, ok, bad, other);
    END LOOP;
END $$;
SELECT what, ok > 100 AS some_decoded, corrupt > 100 AS some_corrupt, other FROM fuzz_result ORDER BY what;
-- not a kvsep table; NULL arguments
CREATE TABLE plain (id int);
SELECT kvsep_decode_key('plain', '\x00');
SELECT kvsep_decode_key('dec', NULL) IS NULL AS strict;
DROP TABLE plain;
DROP FOREIGN TABLE dec;
