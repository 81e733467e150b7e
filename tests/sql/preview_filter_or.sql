-- The preview is an ordinary table-valued function: its rows can be filtered with any
-- WHERE clause, including OR between conditions on its columns, IN, and LIMIT, and the
-- result is the filtered list of requests (no "argument is missing" error).
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('companies', '{"credential": "fake", "key": "id",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');
CREATE TABLE shops(id, name);
INSERT INTO shops VALUES (1, 'a'), (2, 'b'), (NULL, 'c'), (4, 'd');

SELECT '-- AND, IN';
SELECT batch, body FROM callrail_preview('companies', 'shops') WHERE error IS NULL AND batch > 1;
SELECT batch, body FROM callrail_preview('companies', 'shops') WHERE batch IN (1, 3);

SELECT '-- OR';
SELECT batch, error FROM callrail_preview('companies', 'shops') WHERE batch = 1 OR error IS NOT NULL;
SELECT count(*) FROM callrail_preview('companies', 'shops') WHERE body LIKE '%"a"%' OR body LIKE '%"d"%';
SELECT count(*) FROM callrail_preview('companies', 'shops') WHERE records = 1 OR records = 2;

SELECT '-- LIMIT and ORDER BY';
SELECT batch FROM callrail_preview('companies', 'shops') ORDER BY batch DESC LIMIT 2;
