-- A NULL (or BLOB) name passed to any function or table-valued function is an
-- SQL error naming the argument; an unknown destination or credential name is
-- an SQL error naming it; a missing required argument of a table-valued
-- function is an error saying which.  Nothing is sent or saved.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('d', '{"credential":"fake","url":"/v3/a/ACC0000000000000000000000000000001/companies.json"}');
SELECT callrail_credential(NULL, 'tok');
SELECT callrail_credential(NULL, 'tok', '{{BASE}}');
SELECT callrail_credential('x', NULL);
SELECT callrail_credential('x', NULL, '{{BASE}}');
SELECT callrail_credential(x'00', 'tok');
SELECT callrail_destination(NULL, '{"credential":"fake","url":"/v3/a.json"}');
SELECT callrail_destination(x'61', '{"credential":"fake","url":"/v3/a.json"}');
SELECT callrail_activate(NULL);
SELECT callrail_deactivate(NULL);
SELECT callrail_test(NULL, '{}');
SELECT callrail_test('d', NULL);
SELECT * FROM callrail_preview(NULL, 'SELECT 1 AS a');
SELECT * FROM callrail_preview('d', NULL);
SELECT * FROM callrail_send(NULL, 'SELECT 1 AS a');
SELECT * FROM callrail_accounts(NULL);
SELECT callrail_activate('nosuch');
SELECT callrail_deactivate('nosuch');
SELECT callrail_test('nosuch', '{}');
SELECT * FROM callrail_preview('nosuch', 'SELECT 1 AS a');
SELECT * FROM callrail_send('nosuch', 'SELECT 1 AS a');
SELECT * FROM callrail_accounts('nosuch');
SELECT * FROM callrail_preview('d');
SELECT * FROM callrail_preview();
SELECT * FROM callrail_send('d');
SELECT * FROM callrail_accounts();
SELECT (SELECT count(*) FROM callrail_credentials) AS credentials,
       (SELECT count(*) FROM callrail_destinations) AS destinations,
       (SELECT count(*) FROM callrail_runs) AS runs,
       (SELECT count(*) FROM callrail_responses) AS responses;
