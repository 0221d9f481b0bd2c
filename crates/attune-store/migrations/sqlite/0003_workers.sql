-- Worker processes (the server's embedded workers, `attune worker`s): each row is one
-- process, kept alive by its heartbeat. An execution's `worker` names the process that
-- claimed it; when that process's heartbeat is older than the lease, its executions in
-- flight are abandoned (at most once: never run again).
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    concurrency  INTEGER NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at   TEXT
);
CREATE INDEX executions_by_worker ON executions (worker, status);
