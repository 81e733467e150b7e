-- The registered SQL surface is exactly the SPEC's: callrail_version() is pure
-- (SQLITE_INNOCUOUS 0x200000 + SQLITE_DETERMINISTIC 0x800, not DIRECTONLY),
-- every other function is SQLITE_DIRECTONLY (0x80000 = 524288 in the flags
-- column of pragma_function_list), and the modules are exactly
-- callrail_accounts, callrail_get, callrail_preview and callrail_send.
.headers on
.mode list
SELECT name, narg,
       flags & 524288 AS directonly,
       flags & 2097152 AS innocuous,
       flags & 2048 AS deterministic
  FROM pragma_function_list WHERE name LIKE 'callrail%' ORDER BY 1, 2;
-- The raw flags value the 3.40 shell prints (SQLITE_FUNC_* bits as stored).
SELECT name, narg, flags FROM pragma_function_list WHERE name LIKE 'callrail%' ORDER BY 1, 2;
SELECT name FROM pragma_module_list WHERE name LIKE 'callrail%' ORDER BY 1;
-- No function other than callrail_version escapes DIRECTONLY.
SELECT count(*) AS not_directonly FROM pragma_function_list
 WHERE name LIKE 'callrail%' AND name <> 'callrail_version' AND flags & 524288 = 0;
