-- A bad destination "url" is an SQL error naming the destination and key
-- "url": unterminated "{", "{" nested in a placeholder, stray "}", empty
-- placeholders, spaces, a placeholder in the host, a path not under /v3/, a
-- non-http scheme, and an absolute URL whose origin (scheme, host, port)
-- differs from the credential's api_base (also for update.url), and a URL that
-- names no account.  An absolute URL on the
-- credential's own origin is accepted.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_credential('real', 'env:CALLRAIL_TEST_UNSET_VAR');
SELECT callrail_destination('unterminated', '{"credential":"fake","url":"/v3/a/{account_id/companies.json"}');
SELECT callrail_destination('unterminated_end', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/{id"}');
SELECT callrail_destination('nested', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/{i{d}}.json"}');
SELECT callrail_destination('stray_close', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/id}.json"}');
SELECT callrail_destination('empty_placeholder', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/{}.json"}');
SELECT callrail_destination('empty_record_placeholder', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/{record.}.json"}');
SELECT callrail_destination('space_in_placeholder', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies/{a b}.json"}');
SELECT callrail_destination('space_in_path', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/com panies.json"}');
SELECT callrail_destination('host_placeholder', '{"credential":"fake","url":"https://{host}/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('no_host', '{"credential":"fake","url":"https:///v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('relative', '{"credential":"fake","url":"v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('not_v3', '{"credential":"fake","url":"/v2/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('ftp', '{"credential":"fake","url":"ftp://127.0.0.1/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('empty', '{"credential":"fake","url":""}');
SELECT callrail_destination('other_origin_host', '{"credential":"fake","url":"https://api.callrail.com/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('other_origin_port', '{"credential":"fake","url":"http://127.0.0.1:1/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('other_origin_userinfo', '{"credential":"fake","url":"{{BASE}}@evil.example/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('other_origin_scheme', '{"credential":"real","url":"http://api.callrail.com/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('other_origin_real', '{"credential":"real","url":"https://evil.example/v3/a/{account_id}/companies.json"}');
SELECT count(*) AS saved FROM callrail_destinations;
-- Accepted: the credential's own origin, absolute or as a path.
SELECT callrail_destination('same_origin', '{"credential":"fake","url":"{{BASE}}/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('real_origin', '{"credential":"real","url":"https://api.callrail.com/v3/a/{account_id}/companies.json"}');
SELECT callrail_destination('real_origin_port', '{"credential":"real","url":"https://api.callrail.com:443/v3/a/{account_id}/companies.json"}');
SELECT name FROM callrail_destinations ORDER BY 1;
-- Every CallRail endpoint a destination writes to is under /v3/a/{account_id}/
-- (and quota is paced per account): a URL naming no account is refused when
-- the destination is defined, not with "failed (7)" when it is sent.
SELECT callrail_destination('no_account', '{"credential":"fake","url":"/v3/a.json"}');
SELECT callrail_destination('no_account_slash', '{"credential":"fake","url":"/v3/a/{account_id}.json"}');
SELECT callrail_destination('no_account_abs', '{"credential":"real","url":"https://api.callrail.com/v3/companies.json"}');
SELECT callrail_destination('no_account_update', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a.json?id={remote_id}"}}');
-- update.url follows the origin rule of url.
SELECT callrail_destination('update_other_origin', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"https://evil.example/v3/a/{account_id}/companies/{remote_id}.json"}}');
SELECT callrail_destination('update_same_origin', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"{{BASE}}/v3/a/{account_id}/companies/{remote_id}.json"}}');
SELECT name FROM callrail_destinations WHERE name LIKE 'no_account%' OR name LIKE 'update%' ORDER BY 1;
