-- callrail_credential's api_base: https is accepted, http only for a loopback
-- address (127.0.0.0/8, localhost, [::1]); any other http base, another
-- scheme, and a base with a path, query, fragment or user info are refused
-- with an error naming the credential and the base.  The base is stored
-- normalised as scheme://host:port; the default is https://api.callrail.com:443.
SELECT callrail_credential('default', 'tok');
SELECT callrail_credential('default_null', 'tok', NULL);
SELECT callrail_credential('https', 'tok', 'https://api.callrail.com');
SELECT callrail_credential('https_slash', 'tok', 'https://api.callrail.com/');
SELECT callrail_credential('https_port', 'tok', 'https://api.callrail.com:8443');
SELECT callrail_credential('loop_127', 'tok', 'http://127.0.0.1:8080');
SELECT callrail_credential('loop_127_other', 'tok', 'http://127.1.2.3');
SELECT callrail_credential('loop_localhost', 'tok', 'http://localhost:9');
SELECT callrail_credential('loop_ipv6', 'tok', 'http://[::1]:99');
SELECT callrail_credential('fake', 'tok', '{{BASE}}');
SELECT name, source, api_base FROM callrail_credentials ORDER BY name;
-- Refused, nothing stored.
SELECT callrail_credential('bad', 'tok', 'http://example.com');
SELECT callrail_credential('bad', 'tok', 'http://api.callrail.com');
SELECT callrail_credential('bad', 'tok', 'http://10.0.0.1');
SELECT callrail_credential('bad', 'tok', 'http://localhost.example.com');
SELECT callrail_credential('bad', 'tok', 'http://[::2]');
SELECT callrail_credential('bad', 'tok', 'ftp://127.0.0.1');
SELECT callrail_credential('bad', 'tok', 'https://api.callrail.com/v3');
SELECT callrail_credential('bad', 'tok', 'https://api.callrail.com/?x=1');
SELECT callrail_credential('bad', 'tok', 'https://api.callrail.com#frag');
SELECT callrail_credential('bad', 'tok', 'https://user:pw@api.callrail.com');
SELECT callrail_credential('bad', 'tok', 'https://user@api.callrail.com');
SELECT callrail_credential('bad', 'tok', 'api.callrail.com');
SELECT callrail_credential('bad', 'tok', 'https://api.callrail.com /');
SELECT callrail_credential('bad', 'tok', '');
SELECT count(*) AS bad_saved FROM callrail_credentials WHERE name = 'bad';
