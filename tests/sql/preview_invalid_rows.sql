-- An invalid record (a BLOB or infinite value, a missing or NULL URL placeholder, a NULL,
-- missing or duplicate key when `key` is set) shows in the preview as a row of its own with
-- `error` naming the record by its 1-based number in the query (and its key when known)
-- and the reason, batch NULL and records 1; the records after it are still previewed,
-- numbered and batched as if it were not there.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('keyed', '{"credential": "fake", "key": "id",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies/{company_id}.json", "method": "PUT",
  "exclude": ["company_id"]}');
CREATE TABLE recs(id, company_id, name, extra);
INSERT INTO recs VALUES
  (1, 'COM1', 'ok one', NULL),
  (2, 'COM2', 'has blob', x'00ff'),
  (3, NULL, 'no company', NULL),
  (NULL, 'COM4', 'null key', NULL),
  (1, 'COM5', 'duplicate key', NULL),
  (6, 'COM6', 'ok two', NULL),
  ('6', 'COM7', 'text 6 duplicates integer 6', NULL),
  (8, 'COM8', 'infinite', 1e999),
  (9, 'COM9', 'ok three', NULL);

SELECT '-- one row per record, in query order';
SELECT batch, records, method, error FROM callrail_preview('keyed', 'SELECT * FROM recs ORDER BY rowid');

SELECT '-- the valid rows are exactly the valid records';
SELECT batch, url, body FROM callrail_preview('keyed', 'recs') WHERE error IS NULL;

SELECT '-- a missing key attribute';
SELECT batch, error FROM callrail_preview('keyed', 'SELECT ''COM1'' AS company_id, ''no id column'' AS name');
SELECT batch, error FROM callrail_preview('keyed', 'SELECT json_array(1) AS id, ''COM1'' AS company_id');

SELECT '-- in batches invalid records stay out of the arrays';
SELECT callrail_destination('keyed_batch', '{"credential": "fake", "key": "id",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 3}}');
SELECT batch, records, body, error FROM callrail_preview('keyed_batch', 'SELECT id, name, extra FROM recs ORDER BY rowid');

SELECT '-- an all-invalid query';
SELECT batch, records, error FROM callrail_preview('keyed_batch', 'SELECT NULL AS id UNION ALL SELECT NULL');
