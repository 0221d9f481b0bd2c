-- The secret store: values sealed with AES-256-GCM, the scope and name bound in as
-- associated data, so a value copied to another row or scope no longer opens. `scope` is
-- `global`, `pack:<pack>` or `action:<pack>.<action>`.
CREATE TABLE secrets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (scope, name)
);
CREATE INDEX secrets_by_name ON secrets (name, scope);

-- The audit log: who did what and when; `detail` is a JSON object of names and ids, never a
-- value. Append-only: nothing may change or remove an entry.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_kind ON audit (kind, id);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Tokens: when each was last used, and revocation (a revoked token is kept, for the audit
-- log's sake, and refused).
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;

-- Which secret parameters of an execution came from the store, and how
-- ({"param": {"name": …, "scope": …, "explicit": true|false}}), so a rerun resolves them again.
ALTER TABLE executions ADD COLUMN secret_refs TEXT;
