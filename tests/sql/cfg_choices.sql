-- A value outside a key's allowed strings is an SQL error naming the
-- destination, the key and the choices: format other than "json" (it says only
-- json is supported), method GET or lower-case, on_quota "abort"/"WAIT",
-- batch.grouping "size", progress "yes", and the batch cross-key rules
-- (attributes only with grouping attribute, max_bytes required with bytes).
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('format_xml', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","format":"xml"}');
SELECT callrail_destination('format_upper', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","format":"JSON"}');
SELECT callrail_destination('format_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","format":1}');
SELECT callrail_destination('method_get', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","method":"GET"}');
SELECT callrail_destination('method_lower', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","method":"post"}');
SELECT callrail_destination('method_empty', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","method":""}');
SELECT callrail_destination('on_quota_abort', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","on_quota":"abort"}');
SELECT callrail_destination('on_quota_upper', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","on_quota":"WAIT"}');
SELECT callrail_destination('on_quota_bool', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","on_quota":true}');
SELECT callrail_destination('grouping_size', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"size"}}');
SELECT callrail_destination('progress_yes', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","progress":"yes"}');
SELECT callrail_destination('attribute_no_attributes', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"attribute"}}');
SELECT callrail_destination('attribute_empty_attributes', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"attribute","attributes":[]}}');
SELECT callrail_destination('count_with_attributes', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"count","attributes":["a"]}}');
SELECT callrail_destination('bytes_no_max', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"bytes"}}');
SELECT callrail_destination('wrap_empty', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"wrap":""}}');
SELECT count(*) AS saved FROM callrail_destinations;
