-- Good destination configs are saved inactive; replacing a destination keeps
-- its active state (active or not) and created_at, and changes config and
-- updated_at; a rejected replacement leaves the saved row untouched;
-- callrail_activate/callrail_deactivate of an unknown name is an error naming it.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
-- Every key of README "Destination config", valid.
SELECT callrail_destination('full', '{
  "credential": "fake", "method": "PUT",
  "url": "/v3/a/{account_id}/companies/{record.id}.json",
  "params": {"account_id": "ACC0000000000000000000000000000001", "n": 5, "r": 1.5},
  "format": "json", "headers": {"X-Trace": "abc"}, "exclude": ["id"],
  "batch": {"size": 10, "grouping": "attribute", "attributes": ["id"], "wrap": "companies"},
  "key": "id", "concurrency": 64, "timeout_ms": 1, "connect_timeout_ms": 600000,
  "retry": {"max_attempts": 100, "base_delay_ms": 0, "max_delay_ms": 0, "retry_post": true},
  "rate_limit": {"per_hour": 1, "per_day": 100000000, "per_second": 1},
  "on_quota": "stop", "capture_responses": false, "progress": "auto"}');
SELECT callrail_destination('bytes', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","batch":{"grouping":"bytes","max_bytes":64,"size":1000}}');
SELECT callrail_destination('batch_null', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","batch":null,"progress":false}');
SELECT callrail_destination('batch_false', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","batch":false,"progress":true}');
SELECT callrail_destination('d', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT name, active FROM callrail_destinations ORDER BY name;
-- The config is stored as JSON.
SELECT config FROM callrail_destinations WHERE name = 'd';

-- Replace an active destination: still active, config and updated_at change.
SELECT callrail_activate('d');
UPDATE callrail_destinations SET created_at = '2000-01-01T00:00:00.000Z',
       updated_at = '2000-01-01T00:00:00.000Z' WHERE name = 'd';
SELECT callrail_destination('d', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":2}');
SELECT active, json_extract(config, '$.concurrency') AS concurrency,
       created_at = '2000-01-01T00:00:00.000Z' AS created_kept,
       updated_at > '2000-01-01T00:00:00.000Z' AS updated_changed
  FROM callrail_destinations WHERE name = 'd';

-- A rejected replacement changes nothing.
UPDATE callrail_destinations SET updated_at = '2000-01-01T00:00:00.000Z' WHERE name = 'd';
SELECT callrail_destination('d', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":"8"}');
SELECT active, json_extract(config, '$.concurrency') AS concurrency, updated_at
  FROM callrail_destinations WHERE name = 'd';

-- Replace an inactive destination: still inactive.
SELECT callrail_deactivate('d');
SELECT callrail_destination('d', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":3}');
SELECT active, json_extract(config, '$.concurrency') AS concurrency FROM callrail_destinations WHERE name = 'd';

-- Activating twice is fine; unknown names are errors naming them.
SELECT callrail_activate('d');
SELECT callrail_activate('d');
SELECT callrail_activate('nosuch');
SELECT callrail_deactivate('nosuch');
SELECT callrail_activate('D');
SELECT name, active FROM callrail_destinations ORDER BY name;
