-- Schema 1 (callrail-sqlite 0.1.0) to schema 2 (0.2.0).  Run by
-- ext/cr_schema.c inside one write transaction, after it has read
-- version 1 under that transaction's lock; the record hashes of
-- callrail_delivered are then recomputed in C (the new request identity).
--
-- callrail_runs and callrail_responses are rebuilt: AUTOINCREMENT (ids
-- never reused after pruning) and a wider CHECK on kind cannot be added by
-- ALTER TABLE.  Rows keep their ids.

CREATE TABLE callrail_runs_2(
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
INSERT INTO callrail_runs_2(run_id, destination, kind, started_at, finished_at, records,
  requests, ok, failed, unknown, skipped, invalid, status, host, pid, pid_start, error)
  SELECT run_id, destination, kind, started_at, finished_at, records, requests, ok, failed,
  unknown, skipped, invalid, status, host, pid, pid_start, error FROM callrail_runs;
DROP TABLE callrail_runs;
ALTER TABLE callrail_runs_2 RENAME TO callrail_runs;
CREATE INDEX callrail_runs_running ON callrail_runs(destination) WHERE status = 'running';

CREATE TABLE callrail_responses_2(
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
INSERT INTO callrail_responses_2(id, run_id, destination, batch, records, record_keys, method,
  url, request_body, status, state, response_body, error, attempts, sent_at, duration_ms,
  quota_bucket, quota_class, sent_ms, record_key, remote_id)
  SELECT id, run_id, destination, batch, records, record_keys, method, url, request_body, status,
  state, response_body, error, attempts, sent_at, duration_ms, quota_bucket, quota_class, sent_ms,
  CASE WHEN records = 1 AND json_valid(record_keys) AND json_array_length(record_keys) = 1
       THEN record_keys ->> 0 END,
  CASE WHEN state = 'ok' AND records = 1 AND json_valid(response_body)
       THEN json_extract(response_body, '$.id') END
  FROM callrail_responses;
DROP TABLE callrail_responses;
ALTER TABLE callrail_responses_2 RENAME TO callrail_responses;
CREATE INDEX callrail_responses_by_run ON callrail_responses(run_id);
CREATE INDEX callrail_responses_by_time
  ON callrail_responses(sent_ms) WHERE sent_ms IS NOT NULL;
CREATE INDEX callrail_responses_unresolved
  ON callrail_responses(destination, state, resolved_by, record_keys)
  WHERE state IN ('pending','unknown') AND resolved_by IS NULL;
CREATE INDEX callrail_responses_by_key
  ON callrail_responses(destination, record_key);

-- unknown rows whose keys were all delivered by a later request no longer
-- hold them back (the same statement as cr_sql_settle in ext/cr_prune.c)
UPDATE callrail_responses AS r SET resolved_by = (SELECT max(d.response_id)
  FROM json_each(r.record_keys) k JOIN callrail_delivered d
  ON d.destination = r.destination AND d.record_key = k.value)
 WHERE r.state = 'unknown' AND json_valid(r.record_keys)
 AND json_type(r.record_keys) = 'array' AND json_array_length(r.record_keys) > 0
 AND NOT EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(r.record_keys)
   THEN r.record_keys ELSE '[null]' END) k
  LEFT JOIN callrail_delivered d ON d.destination = r.destination AND d.record_key = k.value
  WHERE d.response_id IS NULL OR d.response_id <= r.id);

ALTER TABLE callrail_delivered ADD COLUMN remote_id TEXT;
UPDATE callrail_delivered SET remote_id = (
  SELECT r.remote_id FROM callrail_responses r WHERE r.id = callrail_delivered.response_id);

CREATE TABLE callrail_meta(
  key   TEXT PRIMARY KEY NOT NULL,
  value ANY
);
