-- Batching by attribute: with grouping "attribute", a new batch starts whenever the
-- values of batch.attributes differ from the previous record's (compared as JSON values,
-- so 1 and '1' differ, NULL and missing are alike), and also when `size` is reached or
-- the URL changes; records are never reordered (ORDER BY the attributes to group all).
SELECT callrail_credential('fake', 'test-token', '{{BASE}}');
SELECT callrail_destination('by_company', '{"credential": "fake",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json",
  "batch": {"size": 3, "grouping": "attribute", "attributes": ["company", "kind"]}}');
CREATE TABLE rows_(i INTEGER PRIMARY KEY, company, kind);
INSERT INTO rows_ VALUES (1, 'A', 'x'), (2, 'A', 'x'), (3, 'A', 'y'), (4, 'B', 'y'), (5, 'A', 'x'),
  (6, 'A', 'x'), (7, 'A', 'x'), (8, 'A', 'x'), (9, 1, 'x'), (10, '1', 'x'), (11, '1', 'x'),
  (12, NULL, 'x'), (13, NULL, 'x');

SELECT '-- query order: a change of either attribute starts a batch; size still caps';
SELECT batch, records, body FROM callrail_preview('by_company', 'SELECT i, company, kind FROM rows_ ORDER BY i');

SELECT '-- ORDER BY the attributes groups all of a kind together';
SELECT batch, records, (SELECT json_group_array(json_extract(value, '$.i')) FROM json_each(body))
  FROM callrail_preview('by_company',
  'SELECT i, company, kind FROM rows_ WHERE company IN (''A'', ''B'') ORDER BY company, kind, i');

SELECT '-- missing grouping attribute and NULL group together';
SELECT batch, records, body FROM callrail_preview('by_company',
  'SELECT json(d) FROM (SELECT ''{"i": 1, "kind": "x"}'' AS d UNION ALL SELECT ''{"i": 2, "company": null, "kind": "x"}''
   UNION ALL SELECT ''{"i": 3, "company": "A", "kind": "x"}'')');

SELECT '-- grouping attributes may be excluded from the body';
SELECT callrail_destination('by_company_excluded', '{"credential": "fake",
  "url": "/v3/a/ACC0000000000000000000000000000001/companies.json", "exclude": ["company"],
  "batch": {"size": 10, "grouping": "attribute", "attributes": ["company"], "wrap": "companies"}}');
SELECT batch, records, body FROM callrail_preview('by_company_excluded',
  'SELECT i, company FROM rows_ WHERE i <= 5 ORDER BY i');
