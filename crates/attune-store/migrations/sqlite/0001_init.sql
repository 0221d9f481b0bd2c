-- Packs are stored whole (their files, by content digest), so a worker runs exactly the
-- registered version without the directory it was registered from.
CREATE TABLE packs (
    ref           TEXT PRIMARY KEY,
    version       TEXT,
    description   TEXT,
    digest        TEXT NOT NULL,
    bundle        BLOB NOT NULL,
    registered_at TEXT NOT NULL
);

-- One row per execution. `parameters` never holds a secret value: secret parameters are
-- "********" there and their values are in `secrets`, encrypted (AES-256-GCM).
CREATE TABLE executions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    action_ref       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('requested', 'scheduled', 'running', 'canceling',
                         'succeeded', 'failed', 'timeout', 'canceled', 'abandoned')),
    parameters       TEXT NOT NULL,
    secrets          BLOB,
    env_vars         TEXT NOT NULL,
    timeout_secs     INTEGER,
    requested_by     TEXT NOT NULL,
    worker           TEXT,
    rerun_of         INTEGER REFERENCES executions (id),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    exit_code        INTEGER,
    signal           INTEGER,
    result           TEXT,
    stdout           TEXT,
    stderr           TEXT,
    error            TEXT
);
CREATE INDEX executions_by_status ON executions (status, id);
CREATE INDEX executions_by_action ON executions (action_ref, id);

-- API tokens: only a SHA-256 of each token is kept.
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
