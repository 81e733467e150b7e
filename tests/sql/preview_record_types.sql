-- callrail_preview maps each result row to one JSON record exactly as README "Functions" says:
-- INTEGER/REAL -> JSON numbers, TEXT -> strings (escaped), NULL -> null, values with
-- SQLite's JSON subtype (json(), json_object(), json_array(), ->) nested as JSON;
-- column names become attribute names in column order; the query may be a SELECT,
-- a WITH ... SELECT or a bare (optionally schema-qualified) table name.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('companies', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');

SELECT '-- scalar types';
SELECT body FROM callrail_preview('companies',
  'SELECT 42 AS i, -7 AS neg, 9223372036854775807 AS big, 2.5 AS r, -0.125 AS r2,
          ''Widget Shop'' AS t, '''' AS empty, ''0042'' AS digits, NULL AS n');
SELECT json_type(body, '$.huge'), json_extract(body, '$.huge') = 1e300, json_type(body, '$.r'),
       json_type(body, '$.big'), json_extract(body, '$.big') = 9223372036854775807
  FROM callrail_preview('companies', 'SELECT 1e300 AS huge, 2.5 AS r, 9223372036854775807 AS big');

SELECT '-- TEXT is escaped, never parsed';
SELECT body FROM callrail_preview('companies',
  'SELECT ''say "hi"\'' AS q, ''tab' || char(9) || 'nl' || char(10) || 'end'' AS ws,
          ''ünïcödé €'' AS u, ''{"a":1}'' AS looks_like_json, ''[1,2]'' AS looks_like_array,
          ''true'' AS looks_like_bool');

SELECT '-- JSON subtype values are nested';
SELECT body FROM callrail_preview('companies',
  'SELECT json(''{"a": [1, 2, {"b": null}]}'') AS j, json_array(1, ''two'', 3.5, NULL) AS arr,
          json_object(''k'', json_object(''deep'', json(''false''))) AS obj, json(''true'') AS yes,
          json(''"quoted"'') AS str, (''{"x": {"y": 5}}'' -> ''$.x'') AS arrow');

SELECT '-- column order is kept, not sorted';
SELECT body FROM callrail_preview('companies', 'SELECT 1 AS zeta, 2 AS alpha, 3 AS mid, 4 AS "Alpha"');

SELECT '-- odd column names are attribute names verbatim';
SELECT body FROM callrail_preview('companies', 'SELECT 1 AS "two words", 2 AS "a.b", 3 AS "$x", 4 AS "é"');

SELECT '-- bare table name, schema-qualified name, with trailing spaces and semicolon';
CREATE TABLE shops(name TEXT, employees INTEGER, rating REAL, notes TEXT);
INSERT INTO shops VALUES ('Widget Shop', 12, 4.5, NULL), ('Gadget Barn', 3, NULL, 'new');
SELECT body FROM callrail_preview('companies', 'shops');
SELECT body FROM callrail_preview('companies', 'main.shops');
SELECT body FROM callrail_preview('companies', '  shops ;  ');

SELECT '-- WITH ... SELECT, in query order';
SELECT body FROM callrail_preview('companies',
  'WITH big AS (SELECT name, employees FROM shops WHERE employees > 5)
   SELECT name, employees * 2 AS doubled FROM big
   UNION ALL SELECT ''last'', 0');
SELECT body FROM callrail_preview('companies', 'SELECT name FROM shops ORDER BY name');

SELECT '-- every row is POST to the expanded URL, one record per request';
SELECT batch, records, method, url FROM callrail_preview('companies', 'shops');
