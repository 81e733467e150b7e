-- Records of one request always share one URL: in a batch whose URL has placeholders, a
-- record whose expanded URL differs from the batch being filled closes it (even before
-- `size` is reached), and records with the same URL later on start a new batch (count
-- grouping never reorders records).  Invalid records are rows of their own, never inside
-- a batch, and get no batch number.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('per_account', '{"credential": "fake",
  "url": "/v3/a/{account_id}/companies.json", "exclude": ["account_id"],
  "batch": {"size": 3}}');

SELECT '-- URL changes close the batch';
SELECT batch, records, url, body FROM callrail_preview('per_account',
  'WITH v(account_id, i) AS (VALUES (''A1'', 1), (''A1'', 2), (''B2'', 3), (''A1'', 4), (''A1'', 5),
     (''A1'', 6), (''A1'', 7), (''C3'', 8), (''C3'', 9)) SELECT * FROM v');

SELECT '-- the URL compares after encoding and params (records lacking account_id take params)';
SELECT callrail_destination('params_fill', '{"credential": "fake",
  "url": "/v3/a/{account_id}/companies.json", "params": {"account_id": "A1"},
  "batch": {"size": 10}}');
SELECT batch, records, url, body FROM callrail_preview('params_fill',
  'WITH v(i, account_id) AS (VALUES (1, NULL), (2, ''A1''), (3, NULL), (4, ''A 1''), (5, ''A%201''), (6, NULL))
   SELECT CASE WHEN account_id IS NULL THEN json_object(''i'', i)
               ELSE json_object(''i'', i, ''account_id'', account_id) END FROM v');

SELECT '-- an invalid record between two of one URL';
SELECT callrail_destination('record_only', '{"credential": "fake",
  "url": "/v3/a/{record.account_id}/companies.json", "exclude": ["account_id"],
  "batch": {"size": 10}}');
SELECT batch, records, url, body, error FROM callrail_preview('record_only',
  'WITH v(account_id, i) AS (VALUES (''A1'', 1), (NULL, 2), (''A1'', 3), (''B2'', 4)) SELECT * FROM v');
