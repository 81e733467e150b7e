-- Batching by count: with batch.size N, records are gathered in query order into requests
-- of N (the last one holding the rest); each body is a JSON array of the records (or
-- {"wrap": [...]} with batch.wrap), `records` counts them, `batch` numbers the requests
-- 1, 2, ...; without `batch` every record is its own request with a JSON object body.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
CREATE TABLE nums AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
  SELECT i, 'shop ' || i AS name FROM n;

SELECT '-- size 3 over 10 records: 3, 3, 3, 1';
SELECT callrail_destination('by3', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 3}}');
SELECT batch, records, method, body FROM callrail_preview('by3', 'SELECT i FROM nums');
SELECT json_type(body), json_array_length(body) = records FROM callrail_preview('by3', 'nums');

SELECT '-- query order, not table order';
SELECT batch, body FROM callrail_preview('by3', 'SELECT i FROM nums WHERE i <= 5 ORDER BY i DESC');

SELECT '-- exact multiple: no empty trailing request; grouping "count" is the default';
SELECT callrail_destination('by5', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 5, "grouping": "count"}}');
SELECT batch, records FROM callrail_preview('by5', 'nums');

SELECT '-- fewer records than size: one request';
SELECT batch, records, body FROM callrail_preview('by5', 'SELECT i FROM nums WHERE i < 3');
SELECT count(*) FROM callrail_preview('by5', 'SELECT i FROM nums WHERE i > 100');

SELECT '-- size 1: arrays of one';
SELECT callrail_destination('by1', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 1}}');
SELECT batch, records, body FROM callrail_preview('by1', 'SELECT i FROM nums WHERE i < 3');

SELECT '-- wrap';
SELECT callrail_destination('wrapped', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 4, "wrap": "companies"}}');
SELECT batch, records, body FROM callrail_preview('wrapped', 'nums');
SELECT json_array_length(body, '$.companies') = records FROM callrail_preview('wrapped', 'nums');

SELECT '-- a wrap name that needs JSON escaping is refused (it is a JSON path label when a batch is split)';
SELECT callrail_destination('oddwrap', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 2, "wrap": "we \"quote\""}}');
SELECT body, json_valid(body) FROM callrail_preview('oddwrap', 'SELECT i FROM nums WHERE i < 4');

SELECT '-- one-column JSON object records go into the array as themselves';
SELECT batch, records, body FROM callrail_preview('by3', 'SELECT json_object(''name'', name) FROM nums WHERE i < 5');

SELECT '-- no batch: one object per request, batch = record number';
SELECT callrail_destination('single', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT batch, records, body FROM callrail_preview('single', 'SELECT i FROM nums WHERE i < 4');
