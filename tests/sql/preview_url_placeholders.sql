-- URL placeholders (README "Destination config" `url`): {x} takes the record's attribute x, else params.x;
-- {record.x} takes the record's attribute only; a missing or NULL value makes the record an
-- invalid row whose error names the record and the placeholder; values are percent-encoded
-- (only RFC 3986 unreserved characters stay, UTF-8 bytes encoded); numbers and booleans
-- print as JSON does; a path URL is joined to the credential's api_base, an absolute URL kept.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('update', '{"credential": "fake", "method": "PUT",
  "url": "/v3/a/{account_id}/companies/{company_id}.json",
  "params": {"account_id": "ACC0000000000000000000000000000001", "company_id": "COMPARAM"}}');

SELECT '-- record attribute wins over params; params fill what the record lacks';
SELECT url FROM callrail_preview('update', 'SELECT ''COM1'' AS company_id, ''x'' AS name');
SELECT url FROM callrail_preview('update', 'SELECT ''x'' AS name');
SELECT url FROM callrail_preview('update', 'SELECT ''ACC0000000000000000000000000000002'' AS account_id, ''COM2'' AS company_id');

SELECT '-- percent-encoding';
SELECT url FROM callrail_preview('update', 'WITH v(company_id) AS (VALUES
  (''a b''), (''a/b''), (''a?b''), (''a#b''), (''a%b''), (''a&b=c''), (''a+b''),
  (''é''), (''€''), (''日本''), (''-._~AZaz09''), (''{x}'')) SELECT company_id, 1 AS n FROM v');

SELECT '-- numbers and booleans';
SELECT url FROM callrail_preview('update', 'WITH v(company_id) AS (VALUES (42), (-3), (0), (2.5)) SELECT company_id, 1 AS n FROM v');
SELECT url FROM callrail_preview('update', 'SELECT json(''true'') AS company_id');
SELECT url FROM callrail_preview('update', 'SELECT json_object(''company_id'', 123456789012)');

SELECT '-- {record.x}: never from params';
SELECT callrail_destination('strict', '{"credential": "fake", "method": "PUT",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies/{record.company_id}.json",
  "params": {"company_id": "COMPARAM"}}');
SELECT url, error FROM callrail_preview('strict', 'SELECT ''COM9'' AS company_id');
SELECT batch, error FROM callrail_preview('strict', 'SELECT ''no id'' AS name');
SELECT batch, error FROM callrail_preview('strict', 'SELECT NULL AS company_id, ''null id'' AS name');

SELECT '-- {x} without params: missing or NULL is invalid';
SELECT callrail_destination('noparams', '{"credential": "fake", "method": "PUT",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies/{company_id}.json"}');
SELECT batch, error FROM callrail_preview('noparams', 'SELECT ''no id'' AS name');
SELECT batch, error FROM callrail_preview('noparams', 'SELECT NULL AS company_id');
SELECT batch, error FROM callrail_preview('noparams', 'SELECT json_array(1, 2) AS company_id, 1 AS n');
SELECT batch, error FROM callrail_preview('noparams', 'SELECT json_object(''company_id'', json_object(''a'', 1))');

SELECT '-- the invalid record does not stop the next ones, and only valid rows are numbered';
SELECT batch, records, url, error FROM callrail_preview('noparams',
  'WITH v(company_id) AS (VALUES (''COM1''), (NULL), (''COM3'')) SELECT company_id, 1 AS n FROM v');

SELECT '-- the same placeholder twice, and a placeholder in the query string';
SELECT callrail_destination('twice', '{"credential": "fake", "method": "PUT",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies/{id}.json?again={id}&tag={tag}"}');
SELECT url FROM callrail_preview('twice', 'SELECT ''C 1'' AS id, ''a&b'' AS tag');

SELECT '-- path URLs follow the credential''s api_base (a trailing slash there is not doubled)';
SELECT callrail_credential('slash', 'test-token', '{{BASE}}/');
SELECT callrail_destination('via_slash', '{"credential": "slash", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT url FROM callrail_preview('via_slash', 'SELECT 1 AS n');
SELECT callrail_destination('absolute', '{"credential": "fake", "url": "{{BASE}}/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT url FROM callrail_preview('absolute', 'SELECT 1 AS n');
