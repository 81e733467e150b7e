-- The keys of many runs and `json`, through callrail_destination: each bad
-- value or broken rule is an SQL error naming the destination and the key
-- (sync without key, upsert without POST or update or {remote_id}, update
-- without upsert, unknown members of update, id_path, on_busy, lease_ms,
-- json); the good configs are saved as written.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('sync_bad', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"sometimes"}');
SELECT callrail_destination('sync_no_key', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","sync":"changed"}');
SELECT callrail_destination('upsert_put', '{"credential":"fake","method":"PUT","url":"/v3/a/{account_id}/companies/{id}.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json"}}');
SELECT callrail_destination('upsert_no_update', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert"}');
SELECT callrail_destination('upsert_no_remote_id', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{id}.json"}}');
SELECT callrail_destination('upsert_batch', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json"},"batch":{"size":5}}');
SELECT callrail_destination('update_without_upsert', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json"}}');
SELECT callrail_destination('update_unknown', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json","verb":"PUT"}}');
SELECT callrail_destination('update_method', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json","method":"DELETE"}}');
SELECT callrail_destination('update_no_url', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"method":"PUT"}}');
SELECT callrail_destination('id_path_bad', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","id_path":"id"}');
SELECT callrail_destination('on_busy_bad', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","on_busy":"fail"}');
SELECT callrail_destination('lease_short', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","lease_ms":5000}');
SELECT callrail_destination('lease_text', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","lease_ms":"60000"}');
SELECT callrail_destination('json_text', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","json":"tags"}');
SELECT callrail_destination('json_number', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","json":["tags",7]}');
SELECT count(*) AS saved FROM callrail_destinations;
-- Accepted.
SELECT callrail_destination('upsert', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","key":"id","sync":"upsert","update":{"url":"/v3/a/{account_id}/companies/{remote_id}.json","method":"PATCH"},"id_path":"$.id","on_busy":"error","lease_ms":10000,"json":["tags"]}');
SELECT callrail_destination('new', '{"credential":"fake","method":"PUT","url":"/v3/a/{account_id}/companies/{id}.json","key":"id","sync":"new"}');
SELECT name FROM callrail_destinations ORDER BY 1;
