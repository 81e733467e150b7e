-- The optional third argument `limit` shows at most that many preview rows (requests and
-- invalid rows alike, counted after batching); without it, or with NULL, every row shows;
-- a limit larger than the row count shows all; 0 shows none.  The hidden column form
-- (WHERE "limit" = N) is the same argument.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('companies', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('by3', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 3}}');
CREATE TABLE nums AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
  SELECT i FROM n;

SELECT '-- counts';
SELECT count(*) FROM callrail_preview('companies', 'nums');
SELECT count(*) FROM callrail_preview('companies', 'nums', NULL);
SELECT count(*) FROM callrail_preview('companies', 'nums', 3);
SELECT count(*) FROM callrail_preview('companies', 'nums', 1);
SELECT count(*) FROM callrail_preview('companies', 'nums', 0);
SELECT count(*) FROM callrail_preview('companies', 'nums', 25);
SELECT count(*) FROM callrail_preview('companies', 'nums', 1000);

SELECT '-- the first N in order';
SELECT batch, body FROM callrail_preview('companies', 'nums', 3);

SELECT '-- batches: N requests, not N records';
SELECT batch, records FROM callrail_preview('by3', 'nums', 2);
SELECT count(*), sum(records) FROM callrail_preview('by3', 'nums');

SELECT '-- invalid rows count towards the limit';
SELECT batch, error FROM callrail_preview('companies', 'SELECT x''00'' AS b UNION ALL SELECT 1 UNION ALL SELECT 2', 2);

SELECT '-- hidden-column form';
SELECT count(*) FROM callrail_preview WHERE destination = 'companies' AND query = 'nums' AND "limit" = 4;

SELECT '-- with SQL LIMIT on top';
SELECT batch FROM callrail_preview('companies', 'nums', 5) LIMIT 2;
SELECT count(*) FROM (SELECT batch FROM callrail_preview('companies', 'nums') LIMIT 7);
