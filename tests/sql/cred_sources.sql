-- callrail_credential stores only where the key comes from: 'env:VAR',
-- 'file:PATH', or 'memory' for an inline token, never the token itself;
-- re-registering a name replaces its source and api_base.  An empty reference
-- or an empty token, or a token holding a quote, CR or LF, is refused naming
-- the credential and without echoing the token.
SELECT callrail_credential('e', 'env:CALLRAIL_SOME_VAR');
SELECT callrail_credential('f', 'file:/nonexistent/key', '{{BASE}}');
SELECT callrail_credential('m', 'SECRETtok123');
SELECT name, source, api_base FROM callrail_credentials ORDER BY name;
SELECT count(*) AS token_stored FROM callrail_credentials
 WHERE instr(name || source || api_base || created_at, 'SECRETtok123') > 0;
-- Replace: memory -> env with another api_base, env -> memory, file -> env.
SELECT callrail_credential('m', 'env:OTHER_VAR', '{{BASE}}');
SELECT callrail_credential('e', 'SECRETtok456', 'https://api.callrail.com:444');
SELECT callrail_credential('f', 'env:X');
SELECT name, source, api_base FROM callrail_credentials ORDER BY name;
SELECT count(*) AS rows FROM callrail_credentials;
-- Refused.
SELECT callrail_credential('empty_env', 'env:');
SELECT callrail_credential('empty_file', 'file:');
SELECT callrail_credential('empty_token', '');
SELECT callrail_credential('quote_token', 'SECRET"tok');
SELECT callrail_credential('lf_token', 'SECRET' || char(10) || 'tok');
SELECT callrail_credential('cr_token', 'SECRET' || char(13) || 'tok');
SELECT count(*) AS refused_saved FROM callrail_credentials WHERE name LIKE '%_env' OR name LIKE '%_file' OR name LIKE '%_token';
