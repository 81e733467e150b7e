-- `batch` is refused when the credential's api_base is CallRail's own (its
-- endpoints take one object per request: every array would be rejected and
-- split, spending quota), however the origin is spelled; it is accepted for
-- a proxy or a loopback server.
SELECT callrail_credential('real', 'env:CALLRAIL_TEST_UNSET_VAR');
SELECT callrail_credential('real443', 'env:CALLRAIL_TEST_UNSET_VAR', 'https://API.callrail.com:443');
SELECT callrail_credential('proxy', 'env:CALLRAIL_TEST_UNSET_VAR', 'https://proxy.example');
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('real_batch', '{"credential":"real","url":"/v3/a/{account_id}/companies.json","batch":{"size":3}}');
SELECT callrail_destination('real443_batch', '{"credential":"real443","url":"/v3/a/{account_id}/companies.json","batch":{"size":3}}');
SELECT callrail_destination('real_no_batch', '{"credential":"real","url":"/v3/a/{account_id}/companies.json","batch":null}');
SELECT callrail_destination('proxy_batch', '{"credential":"proxy","url":"/v3/a/{account_id}/companies.json","batch":{"size":3}}');
SELECT callrail_destination('fake_batch', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","batch":{"size":3}}');
SELECT name FROM callrail_destinations ORDER BY 1;
