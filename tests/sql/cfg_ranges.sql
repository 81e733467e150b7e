-- An out-of-range number in a destination config is an SQL error naming the
-- destination, the key and the allowed range (concurrency 1-64, batch.size
-- 1-1000, retry.max_attempts 1-100, ...); nothing is saved.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('conc_zero', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":0}');
SELECT callrail_destination('conc_65', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":65}');
SELECT callrail_destination('conc_neg', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":-1}');
SELECT callrail_destination('conc_huge', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":99999999999999999999}');
SELECT callrail_destination('conc_2p32', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","concurrency":4294967297}');
SELECT callrail_destination('timeout_zero', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","timeout_ms":0}');
SELECT callrail_destination('connect_timeout_big', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","connect_timeout_ms":600001}');
SELECT callrail_destination('batch_size_zero', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"size":0}}');
SELECT callrail_destination('batch_size_1001', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"size":1001}}');
SELECT callrail_destination('batch_max_bytes_small', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","batch":{"grouping":"bytes","max_bytes":10}}');
SELECT callrail_destination('retry_attempts_zero', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"max_attempts":0}}');
SELECT callrail_destination('retry_attempts_101', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"max_attempts":101}}');
SELECT callrail_destination('retry_base_neg', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"base_delay_ms":-5}}');
SELECT callrail_destination('retry_max_below_base', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","retry":{"base_delay_ms":1000,"max_delay_ms":10}}');
SELECT callrail_destination('rate_hour_zero', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","rate_limit":{"per_hour":0}}');
SELECT count(*) AS saved FROM callrail_destinations;
