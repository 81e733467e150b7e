-- callrail_version() names the extension, libcurl and SQLite versions.
SELECT callrail_version() LIKE 'callrail-sqlite % (libcurl %, SQLite %)';
