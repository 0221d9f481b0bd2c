-- The PostgreSQL schema: the SQLite one (migrations/sqlite) in PostgreSQL's types. Integers
-- are BIGINT throughout; text that is compared or sorted (times, names, scopes) uses the
-- "C" collation, so it orders byte by byte as it does in SQLite.

-- Packs are stored whole (their files, by content digest), so a worker runs exactly the
-- registered version without the directory it was registered from.
CREATE TABLE packs (
    ref           TEXT COLLATE "C" PRIMARY KEY,
    version       TEXT,
    description   TEXT,
    digest        TEXT NOT NULL,
    bundle        BYTEA NOT NULL,
    registered_at TEXT COLLATE "C" NOT NULL
);

-- One row per execution. `parameters` never holds a secret value: secret parameters are
-- "********" there and their values are in `secrets`, encrypted (AES-256-GCM).
CREATE TABLE executions (
    id               BIGSERIAL PRIMARY KEY,
    action_ref       TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('requested', 'scheduled', 'running', 'canceling',
                         'succeeded', 'failed', 'timeout', 'canceled', 'abandoned')),
    parameters       TEXT NOT NULL,
    secrets          BYTEA,
    env_vars         TEXT NOT NULL,
    timeout_secs     BIGINT,
    requested_by     TEXT NOT NULL,
    worker           TEXT,
    rerun_of         BIGINT REFERENCES executions (id),
    created_at       TEXT COLLATE "C" NOT NULL,
    started_at       TEXT COLLATE "C",
    finished_at      TEXT COLLATE "C",
    exit_code        BIGINT,
    signal           BIGINT,
    result           TEXT,
    stdout           TEXT,
    stderr           TEXT,
    error            TEXT
);
CREATE INDEX executions_by_status ON executions (status, id);
CREATE INDEX executions_by_action ON executions (action_ref, id);

-- API tokens: only a SHA-256 of each token is kept.
CREATE TABLE tokens (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL
);
