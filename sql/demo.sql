-- The demo of `make demo`: one destination, previewed, tested, activated and
-- sent to, against the bundled fake CallRail server.  {{BASE}} is replaced
-- by the fake server's address (http://127.0.0.1:PORT) by examples/demo.sh.
.load ./callrail
.mode box
.print '== callrail_version()'
SELECT callrail_version();

.print '== some records: shops to create as CallRail companies'
CREATE TABLE IF NOT EXISTS shops(shop_id INTEGER PRIMARY KEY, name TEXT, time_zone TEXT);
INSERT OR IGNORE INTO shops VALUES
  (1, 'Widget Shop', 'America/New_York'),
  (2, 'Gadget Garage', 'America/Chicago'),
  (3, 'Sprocket Store', 'America/Denver');

.print '== a credential: the key comes from $CALLRAIL_API_KEY, never stored'
SELECT callrail_credential('demo', 'env:CALLRAIL_API_KEY', '{{BASE}}');
SELECT name, source, api_base FROM callrail_credentials;

.print '== a destination: create a company per record, keyed by shop_id'
SELECT callrail_destination('companies', json_object(
  'credential', 'demo',
  'url', '/v3/a/{account_id}/companies.json',
  'params', json_object('account_id', 'ACC0000000000000000000000000000001'),
  'exclude', json_array('shop_id'),
  'key', 'shop_id',
  'concurrency', 2));

.print '== the accounts this key can see'
SELECT id, name, numeric_id FROM callrail_accounts('demo');

.print '== preview: exactly what would be sent (nothing is sent)'
SELECT batch, method, url, body FROM callrail_preview('companies', 'SELECT * FROM shops');

.print '== test: one real request, audited, active or not'
SELECT callrail_test('companies', '{"shop_id": 0, "name": "Demo Test Co"}') AS result;

.print '== activate and send'
SELECT callrail_activate('companies');
SELECT batch, record_key AS shop_id, status, state, remote_id AS company_id
  FROM callrail_send('companies', 'SELECT * FROM shops') ORDER BY batch;

.print '== the audit trail'
SELECT id, run_id, method, status, state, json_extract(response_body, '$.name') AS name
  FROM callrail_responses ORDER BY id;
SELECT run_id, kind, records, requests, ok, failed, skipped, status FROM callrail_runs;

.print '== a second send skips what was already delivered'
SELECT count(*) AS requests FROM callrail_send('companies', 'SELECT * FROM shops');
SELECT run_id, records, requests, skipped, status FROM callrail_runs ORDER BY run_id DESC LIMIT 1;

.print '== your keys and the ids CallRail gave them'
SELECT record_key AS shop_id, remote_id AS company_id FROM callrail_delivered
 WHERE destination = 'companies' ORDER BY CAST(record_key AS INTEGER);
