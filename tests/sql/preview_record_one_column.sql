-- A query of one column whose value is a JSON object (JSON subtype, or TEXT holding a
-- well-formed JSON object) is sent as that object itself; any other one-column value
-- (TEXT that is not an object, malformed JSON, a JSON array, a number, NULL) becomes
-- {"column": value} like a record of several columns.
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('companies', '{"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/companies.json"}');

SELECT '-- objects are the record';
SELECT body FROM callrail_preview('companies', 'SELECT json_object(''name'', ''Widget Shop'', ''n'', 1, ''tags'', json_array(''a'', ''b'')) AS rec');
SELECT body FROM callrail_preview('companies', 'SELECT json(''{"name": "From json()", "nested": {"x": [1, 2]}}'')');
SELECT body FROM callrail_preview('companies', 'SELECT ''{"name": "From TEXT", "n": 2.5}'' AS doc');
SELECT body FROM callrail_preview('companies', 'SELECT ''  { "name" : "padded" }  '' AS doc');
SELECT body FROM callrail_preview('companies', 'SELECT ''{}'' AS doc');
SELECT body FROM callrail_preview('companies', 'SELECT (''{"outer": {"name": "via ->"}}'' -> ''$.outer'') AS doc');

SELECT '-- one row per record, mixing objects and non-objects row by row';
CREATE TABLE docs(doc);
INSERT INTO docs VALUES ('{"name": "A"}'), ('plain text'), ('{"name": "B"}'), (NULL), (7), ('[1, 2]'), ('{"broken"'), ('"just a string"');
SELECT body FROM callrail_preview('companies', 'docs');

SELECT '-- JSON array with subtype stays an attribute';
SELECT body FROM callrail_preview('companies', 'SELECT json_array(1, 2) AS list');
SELECT body FROM callrail_preview('companies', 'SELECT json(''"a JSON string"'') AS s');

SELECT '-- two columns are never unwrapped';
SELECT body FROM callrail_preview('companies', 'SELECT json_object(''name'', ''X'') AS rec, 1 AS other');
