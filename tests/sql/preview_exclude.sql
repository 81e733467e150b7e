-- `exclude` leaves the named attributes out of the body while they still fill URL
-- placeholders ({x} and {record.x}); names that are absent are ignored; it works for a
-- one-column JSON object record, for batches, and never leaves other attributes out.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('update', '{"credential": "fake", "method": "PUT",
  "url": "/v3/a/{account_id}/companies/{record.company_id}.json",
  "exclude": ["company_id", "account_id", "not_there"]}');

SELECT '-- excluded attributes fill the URL but are not in the body';
SELECT url, body FROM callrail_preview('update',
  'SELECT ''ACC0000000000000000000000000000001'' AS account_id, ''COM1'' AS company_id, ''Widget Shop'' AS name, NULL AS company_id_x');

SELECT '-- one-column JSON object record';
SELECT url, body FROM callrail_preview('update',
  'SELECT json_object(''name'', ''From object'', ''company_id'', ''COM2'', ''account_id'', ''ACC0000000000000000000000000000001'', ''time_zone'', ''UTC'')');

SELECT '-- everything excluded leaves an empty object';
SELECT url, body FROM callrail_preview('update',
  'SELECT ''ACC0000000000000000000000000000001'' AS account_id, ''COM3'' AS company_id');

SELECT '-- exclude names are exact (case-sensitive, not prefixes)';
SELECT body FROM callrail_preview('update',
  'SELECT ''ACC0000000000000000000000000000001'' AS account_id, ''COM4'' AS company_id, 1 AS Company_Id, 2 AS company');

SELECT '-- in batches every record loses the excluded attributes';
SELECT callrail_destination('batched', '{"credential": "fake",
  "url": "/v3/a/{account_id}/companies.json", "exclude": ["account_id", "secret"],
  "batch": {"size": 5, "wrap": "companies"}}');
SELECT batch, records, url, body FROM callrail_preview('batched',
  'WITH v(account_id, name, secret) AS (VALUES
     (''ACC0000000000000000000000000000001'', ''a'', ''s1''),
     (''ACC0000000000000000000000000000001'', ''b'', ''s2''),
     (''ACC0000000000000000000000000000001'', ''c'', NULL))
   SELECT * FROM v');
