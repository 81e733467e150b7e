-- An unknown or repeated key anywhere in a destination config (top level or
-- nested, e.g. "batch.sise") is an SQL error naming the destination and the
-- full dotted key; keys are case-sensitive, so "Method" is unknown too.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('typo_top', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurency":1}');
SELECT callrail_destination('typo_case', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","Method":"POST"}');
SELECT callrail_destination('typo_batch', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"sise":10}}');
SELECT callrail_destination('typo_retry', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"max_attempt":3}}');
SELECT callrail_destination('typo_rate', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","rate_limit":{"per_minute":5}}');
SELECT callrail_destination('dup_top', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","credential":"fake"}');
SELECT callrail_destination('dup_nested', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"size":2,"size":3}}');
-- The first bad key in document order is the one named.
SELECT callrail_destination('first_bad', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","zzz":1,"concurrency":"8"}');
SELECT count(*) AS saved FROM callrail_destinations;
