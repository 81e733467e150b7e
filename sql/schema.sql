-- The extension's tables, schema version 2 (callrail-sqlite 0.2.0).
-- callrail.so carries this file compiled in and runs it on a database that
-- has none of them; a database made by an older version is upgraded by the
-- scripts in sql/migrations/ instead (see ext/cr_schema.c).  Any change here
-- needs a new migration script and a new CR_SCHEMA_VERSION.

-- What the extension knows about this database: key 'schema_version'.
-- (Not PRAGMA user_version: that belongs to the application.)
CREATE TABLE IF NOT EXISTS callrail_meta(
  key   TEXT PRIMARY KEY NOT NULL,
  value ANY
);

-- A credential holds a reference to the API key, never the key itself:
-- 'env:VAR', 'file:PATH', or 'memory' (held by one connection only).
CREATE TABLE IF NOT EXISTS callrail_credentials(
  name       TEXT PRIMARY KEY NOT NULL,
  source     TEXT NOT NULL,
  api_base   TEXT NOT NULL DEFAULT 'https://api.callrail.com',
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  ca_file    TEXT  -- CA certificates to verify api_base with, or NULL: the system's
);

CREATE TABLE IF NOT EXISTS callrail_destinations(
  name       TEXT PRIMARY KEY NOT NULL,
  config     TEXT NOT NULL CHECK (json_valid(config)),
  active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0,1)),
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- One row per callrail_send, callrail_test or callrail_get (whose
-- destination is its credential's name).  host, pid and pid_start (the
-- process's start time, -1 where the platform cannot tell) identify the
-- process that ran it; a live run renews heartbeat_ms/heartbeat_at at least
-- every 5 s.  A run is dead when its process is gone (same host) or its
-- heartbeat is older than the destination's lease_ms.  AUTOINCREMENT: a
-- pruned run's id is never given to a new run.
CREATE TABLE IF NOT EXISTS callrail_runs(
  run_id       INTEGER PRIMARY KEY AUTOINCREMENT,
  destination  TEXT NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN ('send','test','get')),
  started_at   TEXT NOT NULL,
  finished_at  TEXT,
  records      INTEGER NOT NULL DEFAULT 0,
  requests     INTEGER NOT NULL DEFAULT 0,
  ok           INTEGER NOT NULL DEFAULT 0,
  failed       INTEGER NOT NULL DEFAULT 0,
  unknown      INTEGER NOT NULL DEFAULT 0,
  skipped      INTEGER NOT NULL DEFAULT 0,
  invalid      INTEGER NOT NULL DEFAULT 0,
  status       TEXT NOT NULL DEFAULT 'running'
               CHECK (status IN ('running','done','interrupted','quota_exhausted','error')),
  host         TEXT,
  pid          INTEGER,
  pid_start    INTEGER,
  error        TEXT,
  changed      INTEGER NOT NULL DEFAULT 0,
  heartbeat_at TEXT,
  heartbeat_ms INTEGER
);
CREATE INDEX IF NOT EXISTS callrail_runs_running
  ON callrail_runs(destination) WHERE status = 'running';

-- One row per HTTP request, or per invalid record that was never sent.
-- quota_bucket names the account the request counts against (its origin and
-- account id), quota_class the CallRail limit it also counts in ('general',
-- 'sms', 'calls'), and sent_ms its wall-clock send time in ms.  record_key
-- is the key of a one-record request (NULL for a batch: see record_keys),
-- remote_id the id CallRail gave the created object.  resolved_by is set on
-- an unresolved row (pending, unknown) once every key it carried was
-- delivered by a later request (that request's id): the row then no longer
-- holds those keys back, and it leaves the small index a run reads at
-- start-up.  AUTOINCREMENT: ids are never reused, even after pruning (an
-- unknown row must never look older than the delivery of its key).
CREATE TABLE IF NOT EXISTS callrail_responses(
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id        INTEGER NOT NULL,
  destination   TEXT NOT NULL,
  batch         INTEGER,
  records       INTEGER NOT NULL DEFAULT 1,
  record_keys   TEXT,
  method        TEXT,
  url           TEXT,
  request_body  TEXT,
  status        INTEGER,
  state         TEXT NOT NULL
                CHECK (state IN ('pending','ok','failed','unknown','invalid')),
  response_body TEXT,
  error         TEXT,
  attempts      INTEGER NOT NULL DEFAULT 0,
  sent_at       TEXT,
  duration_ms   INTEGER,
  quota_bucket  TEXT,
  quota_class   TEXT,
  sent_ms       INTEGER,
  record_key    TEXT,
  remote_id     TEXT,
  resolved_by   INTEGER
);
-- The indexes, each for a reader named here (README "Auditing" lists the
-- queries):
--   by_run:     a run's rows (recovery, "failures of a run", pruning runs);
--   by_time:    requests by send time: the quota pacer's last 24 h, "the
--               last N days by state", "quota used in the last hour"; rows
--               never sent (invalid) have no sent_ms and are left out.  It
--               holds no state: every outcome would then rewrite its entry
--               (about 3 % of a request's instructions);
--   unresolved: only rows that still hold keys back, read by every keyed
--               run at start-up: a row leaves it when it is resolved, or
--               when its keys are delivered later (resolved_by); it
--               covers that read (no page of the table is touched);
--   by_key:     the history of one key (record_key of one-record requests;
--               batches are under record_key NULL, their keys in
--               record_keys).
CREATE INDEX IF NOT EXISTS callrail_responses_by_run ON callrail_responses(run_id);
CREATE INDEX IF NOT EXISTS callrail_responses_by_time
  ON callrail_responses(sent_ms) WHERE sent_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS callrail_responses_unresolved
  ON callrail_responses(destination, state, resolved_by, record_keys)
  WHERE state IN ('pending','unknown') AND resolved_by IS NULL;
CREATE INDEX IF NOT EXISTS callrail_responses_by_key
  ON callrail_responses(destination, record_key);

-- Keyed records delivered with a 2xx: the basis of change detection.
-- record_hash identifies the record's request (method, normalised URL,
-- body as canonical JSON: see ext/cr_identity.c), remote_id is the value at
-- the destination's id_path in the response.  WITHOUT ROWID: the key is
-- the only way in, and one b-tree is one page less to write per delivery.
CREATE TABLE IF NOT EXISTS callrail_delivered(
  destination  TEXT NOT NULL,
  record_key   TEXT NOT NULL,
  record_hash  TEXT NOT NULL,
  response_id  INTEGER NOT NULL,
  delivered_at TEXT NOT NULL,
  remote_id    TEXT,
  PRIMARY KEY (destination, record_key)
) WITHOUT ROWID;
