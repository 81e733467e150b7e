-- The preview's `headers` column is a JSON object of every header the request carries
-- (README "Functions" (headers)): Authorization shown as Token token="***" (never the key), Accept:
-- application/json, User-Agent: callrail-sqlite/<version>, Content-Type: application/json
-- only when there is a body, then the configured extra headers in config order, given as
-- "h1:v1,h2:v2" (spaces around names and values trimmed) or as a JSON object.  DELETE has
-- a NULL body and no Content-Type.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');

SELECT '-- no extra headers';
SELECT callrail_destination('plain', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT json_type(headers), headers FROM callrail_preview('plain', 'SELECT ''x'' AS name');
SELECT json_extract(headers, '$.User-Agent') GLOB 'callrail-sqlite/[0-9]*' FROM callrail_preview('plain', 'SELECT 1 AS n');
SELECT count(*) FROM callrail_preview('plain', 'SELECT 1 AS n') WHERE instr(headers || body, 'test-token') > 0;

SELECT '-- string form';
SELECT callrail_destination('text_form', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "headers": "X-Request-Source:warehouse, X-Batch-Tag : nightly run ,X-Empty-Looking:0"}');
SELECT headers FROM callrail_preview('text_form', 'SELECT ''x'' AS name');

SELECT '-- object form keeps its order and allows commas and colons in values';
SELECT callrail_destination('object_form', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "headers": {"X-Zulu": "last, really", "X-Alpha": "a:b", "X-Quote": "say \"hi\""}}');
SELECT headers FROM callrail_preview('object_form', 'SELECT ''x'' AS name');
SELECT json_extract(headers, '$.X-Quote') FROM callrail_preview('object_form', 'SELECT ''x'' AS name');

SELECT '-- PUT and PATCH have a body and Content-Type';
SELECT callrail_destination('put', '{"credential": "fake", "method": "PUT", "url": "/v3/a/ACC0000000000000000000000000000001/companies/{id}.json",
  "exclude": ["id"], "headers": {"X-Trace": "t1"}}');
SELECT method, headers, body FROM callrail_preview('put', 'SELECT ''COM1'' AS id, ''renamed'' AS name');

SELECT '-- DELETE: no body, no Content-Type, extras still there';
SELECT callrail_destination('delete', '{"credential": "fake", "method": "DELETE", "url": "/v3/a/ACC0000000000000000000000000000001/companies/{id}.json",
  "headers": "X-Trace:t2"}');
SELECT method, url, headers, body IS NULL FROM callrail_preview('delete', 'SELECT ''COM1'' AS id, ''ignored'' AS name');
SELECT json_extract(headers, '$.Content-Type') IS NULL FROM callrail_preview('delete', 'SELECT ''COM2'' AS id');

SELECT '-- DELETE in batches: still no body';
SELECT callrail_destination('delete_batched', '{"credential": "fake", "method": "DELETE", "url": "/v3/a/ACC0000000000000000000000000000001/companies/{id}.json",
  "batch": {"size": 10}}');
SELECT batch, records, url, body IS NULL, json_extract(headers, '$.Content-Type') IS NULL FROM callrail_preview('delete_batched',
  'WITH v(id) AS (VALUES (''COM1''), (''COM1''), (''COM2'')) SELECT * FROM v');
