-- Bad destination "headers" are SQL errors naming the destination and key
-- "headers": an item without ":", an empty item or name, a name that is not an
-- HTTP token, a repeated header, the forbidden Authorization, Content-Type,
-- Content-Length, Host and Transfer-Encoding (any case), CR/LF/NUL/control
-- characters anywhere (string or object form, name or value), an empty value,
-- a non-string member.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('no_colon', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A"}');
SELECT callrail_destination('no_colon_second', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1,X-B"}');
SELECT callrail_destination('empty_item', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1,,X-B:2"}');
SELECT callrail_destination('empty_name', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":":v"}');
SELECT callrail_destination('bad_token', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X A":"1"}}');
SELECT callrail_destination('twice', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1,x-a:2"}');
SELECT callrail_destination('authorization', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"Authorization:Token token=abc"}');
SELECT callrail_destination('authorization_lower', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"authorization":"x"}}');
SELECT callrail_destination('content_type', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"Content-Type":"text/plain"}}');
SELECT callrail_destination('content_length', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"Content-Length:5"}');
SELECT callrail_destination('host', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"HOST:evil.example"}');
SELECT callrail_destination('transfer_encoding', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"Transfer-Encoding":"chunked"}}');
SELECT callrail_destination('crlf_string', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1\r\nX-B:2"}');
SELECT callrail_destination('lf_string', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1\nX-B:2"}');
SELECT callrail_destination('cr_only', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1\rX-B:2"}');
SELECT callrail_destination('crlf_object_value', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X-A":"1\r\nX-Evil: 2"}}');
SELECT callrail_destination('lf_object_name', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X-A\nB":"1"}}');
SELECT callrail_destination('nul', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:1\u0000"}');
SELECT callrail_destination('bell', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A:\u0007"}');
SELECT callrail_destination('empty_value', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X-A":""}}');
SELECT count(*) AS saved FROM callrail_destinations;
-- Accepted: both forms, trimmed.
SELECT callrail_destination('ok_string', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":"X-A: 1 , X-B:two"}');
SELECT callrail_destination('ok_object', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json","headers":{"X-A":"1","X-B":"two"}}');
SELECT headers FROM callrail_preview('ok_string', 'SELECT 1 AS a');
SELECT headers FROM callrail_preview('ok_object', 'SELECT 1 AS a');
