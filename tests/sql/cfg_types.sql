-- A destination config value of the wrong JSON type is an SQL error naming the
-- destination and the (dotted) key, showing the value and its type, e.g.
-- "8" (a string) for concurrency, or a string holding an escaped NUL;
-- nothing is saved.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('conc_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":"8"}');
SELECT callrail_destination('conc_real', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":4.5}');
SELECT callrail_destination('conc_exp', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":1e3}');
SELECT callrail_destination('conc_null', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":null}');
SELECT callrail_destination('conc_bool', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":true}');
SELECT callrail_destination('timeout_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","timeout_ms":"1000"}');
SELECT callrail_destination('batch_size_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"size":"10"}}');
SELECT callrail_destination('batch_num', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":5}');
SELECT callrail_destination('batch_true', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":true}');
SELECT callrail_destination('batch_wrap_num', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"wrap":5}}');
SELECT callrail_destination('batch_attr_num', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"attribute","attributes":[1]}}');
SELECT callrail_destination('retry_array', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":[]}');
SELECT callrail_destination('retry_post_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"retry_post":"yes"}}');
SELECT callrail_destination('retry_post_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"retry_post":1}}');
SELECT callrail_destination('rate_num', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","rate_limit":100}');
SELECT callrail_destination('rate_day_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","rate_limit":{"per_day":"100"}}');
SELECT callrail_destination('rate_sec_real', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","rate_limit":{"per_second":1.5}}');
SELECT callrail_destination('capture_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","capture_responses":"false"}');
SELECT callrail_destination('capture_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","capture_responses":0}');
SELECT callrail_destination('progress_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","progress":1}');
SELECT callrail_destination('method_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","method":1}');
SELECT callrail_destination('params_array', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","params":[]}');
SELECT callrail_destination('params_nested', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","params":{"a":[1]}}');
SELECT callrail_destination('params_null', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","params":{"a":null}}');
SELECT callrail_destination('params_bool', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","params":{"a":true}}');
SELECT callrail_destination('exclude_text', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","exclude":"name"}');
SELECT callrail_destination('exclude_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","exclude":[1]}');
SELECT callrail_destination('exclude_empty', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","exclude":[""]}');
SELECT callrail_destination('key_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","key":5}');
SELECT callrail_destination('key_empty', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","key":""}');
SELECT callrail_destination('key_nul', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","key":"a\u0000b"}');
SELECT callrail_destination('cred_int', '{"credential":7,"url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_destination('url_int', '{"credential":"fake","url":5}');
SELECT callrail_destination('url_null', '{"credential":"fake","url":null}');
SELECT callrail_destination('headers_array', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":[]}');
SELECT callrail_destination('headers_member_int', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X-A":1}}');
SELECT callrail_destination('url_nul', '{"credential":"fake","url":"/v3/a\u0000.json"}');
SELECT callrail_destination('params_nul', '{"credential":"fake","url":"/v3/a.json","params":{"a":"x\u0000y"}}');
SELECT callrail_destination('cred_nul', '{"credential":"fake\u0000x","url":"/v3/a.json"}');
SELECT callrail_destination('wrap_nul', '{"credential":"fake","url":"/v3/a.json","batch":{"wrap":"a\u0000"}}');
SELECT callrail_destination('method_nul', '{"credential":"fake","url":"/v3/a.json","method":"POST\u0000"}');
SELECT callrail_destination('format_nul', '{"credential":"fake","url":"/v3/a.json","format":"json\u0000"}');
-- Nothing was saved.
SELECT count(*) AS saved FROM callrail_destinations;
