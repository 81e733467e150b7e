-- Batching by bytes: with grouping "bytes", a batch is closed before its body (the JSON
-- array, or the wrap object around it) would exceed batch.max_bytes, counted in UTF-8
-- bytes; a body of exactly max_bytes is allowed; `size` still caps the count; a record
-- whose body alone cannot fit is an invalid row naming the record, and the records after
-- it are still batched.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('b64', '{"credential": "fake",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 100, "grouping": "bytes", "max_bytes": 64}}');
-- {"s":"<n x>"} is 8 + n bytes; a batch of k such records is 2 + sum + (k - 1) bytes.

SELECT '-- greedy fill, never above 64 bytes';
SELECT batch, records, length(CAST(body AS BLOB)), body FROM callrail_preview('b64',
  'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8)
   SELECT printf(''%.*c'', i * 4, ''x'') AS s FROM n');

SELECT '-- exactly 64 bytes fits; 65 does not';
SELECT batch, records, length(CAST(body AS BLOB)) FROM callrail_preview('b64',
  'SELECT printf(''%.*c'', 22, ''x'') AS s UNION ALL SELECT printf(''%.*c'', 23, ''x'') UNION ALL SELECT ''y''');
SELECT batch, records, length(CAST(body AS BLOB)) FROM callrail_preview('b64',
  'SELECT printf(''%.*c'', 23, ''x'') AS s UNION ALL SELECT printf(''%.*c'', 23, ''x'')');

SELECT '-- a record too large alone is invalid; others go on';
SELECT batch, records, length(CAST(body AS BLOB)), error FROM callrail_preview('b64',
  'SELECT ''a'' AS s UNION ALL SELECT printf(''%.*c'', 54, ''x'') UNION ALL SELECT printf(''%.*c'', 55, ''x'')
   UNION ALL SELECT ''b'' UNION ALL SELECT ''c''');

SELECT '-- bytes, not characters: {"s":"é"} is 10 bytes, 9 characters; 5 fit (56 bytes), not 6';
SELECT batch, records, length(body), length(CAST(body AS BLOB)) FROM callrail_preview('b64',
  'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12) SELECT ''é'' AS s FROM n');

SELECT '-- size caps before bytes do';
SELECT callrail_destination('b64s2', '{"credential": "fake",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 2, "grouping": "bytes", "max_bytes": 64}}');
SELECT batch, records FROM callrail_preview('b64s2', 'SELECT ''a'' AS s UNION ALL SELECT ''b'' UNION ALL SELECT ''c''');

SELECT '-- with wrap, the wrapper counts: {"companies":[...]} is 16 bytes around the records';
SELECT callrail_destination('b64w', '{"credential": "fake",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 100, "grouping": "bytes", "max_bytes": 64, "wrap": "companies"}}');
SELECT batch, records, length(CAST(body AS BLOB)), error FROM callrail_preview('b64w',
  'SELECT printf(''%.*c'', 15, ''x'') AS s UNION ALL SELECT printf(''%.*c'', 16, ''x'')
   UNION ALL SELECT printf(''%.*c'', 40, ''x'') UNION ALL SELECT printf(''%.*c'', 41, ''x'') UNION ALL SELECT ''y''');

SELECT '-- URL changes still close a bytes batch';
SELECT callrail_destination('b64u', '{"credential": "fake", "exclude": ["a"],
  "url": "/v3/a/{a}/companies.json",
  "batch": {"size": 100, "grouping": "bytes", "max_bytes": 64}}');
SELECT batch, records, url FROM callrail_preview('b64u',
  'SELECT ''A1'' AS a, 1 AS i UNION ALL SELECT ''B2'', 2 UNION ALL SELECT ''B2'', 3');
