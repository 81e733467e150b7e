-- A destination config that is not a JSON object (malformed JSON, an array, a
-- string, a number, JSON null, empty text) is an SQL error naming the
-- destination; so is a config missing "credential" or "url", or naming an
-- unknown or empty credential.  (SQL NULL and BLOB configs: test_bad_input.py.)
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('trailing_comma', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json",}');
SELECT callrail_destination('unclosed', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json"');
SELECT callrail_destination('not_json', 'not json');
SELECT callrail_destination('empty_text', '');
SELECT callrail_destination('array', '[]');
SELECT callrail_destination('string', '"x"');
SELECT callrail_destination('number', '5');
SELECT callrail_destination('json_null', 'null');
SELECT callrail_destination('empty_object', '{}');
SELECT callrail_destination('no_url', '{"credential":"fake"}');
SELECT callrail_destination('no_credential', '{"url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('unknown_credential', '{"credential":"nosuch","url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('empty_credential', '{"credential":"","url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT count(*) AS saved FROM callrail_destinations;
