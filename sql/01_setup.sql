-- Loading, the wrapper, option validation.
CREATE EXTENSION kvsep_fdw;
CREATE SERVER kv FOREIGN DATA WRAPPER kvsep_fdw;

SELECT state, error IS NULL AS no_error, engine_version > 0 AS has_version
FROM kvsep_status();

-- options: only the column option "key"
CREATE SERVER bad FOREIGN DATA WRAPPER kvsep_fdw OPTIONS (dir '/tmp');
CREATE FOREIGN TABLE bad_opt (id int) SERVER kv OPTIONS (path '/tmp');
CREATE FOREIGN TABLE bad_col (id int OPTIONS (primary 'true')) SERVER kv;
CREATE FOREIGN TABLE bad_bool (id int OPTIONS (key 'maybe')) SERVER kv;

-- unsupported key types are refused when the table is created
CREATE FOREIGN TABLE bad_key (id jsonb, v text) SERVER kv;
CREATE FOREIGN TABLE bad_key2 (v text, id point OPTIONS (key 'true')) SERVER kv;
-- ... but any type is fine outside the key
CREATE FOREIGN TABLE any_vals (id int, j jsonb, p point, a int[]) SERVER kv;
INSERT INTO any_vals VALUES (1, '{"a": [1, 2]}', '(1,2)', '{3,4}');
SELECT * FROM any_vals;

-- a nondeterministic collation cannot be in a key
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE FOREIGN TABLE bad_coll (name text COLLATE ci) SERVER kv;

-- every table gets its own key prefix
SELECT count(*) FROM kvsep_relations WHERE relid = 'any_vals'::regclass;
