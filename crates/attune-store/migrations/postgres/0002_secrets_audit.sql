-- The secret store: values sealed with AES-256-GCM, the scope and name bound in as
-- associated data, so a value copied to another row or scope no longer opens. `scope` is
-- `global`, `pack:<pack>` or `action:<pack>.<action>`.
CREATE TABLE secrets (
    id         BIGSERIAL PRIMARY KEY,
    scope      TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    value      BYTEA NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (scope, name)
);
CREATE INDEX secrets_by_name ON secrets (name, scope);

-- The audit log: who did what and when; `detail` is a JSON object of names and ids, never a
-- value. Append-only: nothing may change or remove an entry.
CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT COLLATE "C" NOT NULL,
    actor   TEXT NOT NULL,
    kind    TEXT COLLATE "C" NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_kind ON audit (kind, id);
CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_is_never_truncated BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();

-- Tokens: when each was last used, and revocation (a revoked token is kept, for the audit
-- log's sake, and refused).
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;

-- Which secret parameters of an execution came from the store, and how
-- ({"param": {"name": …, "scope": …, "explicit": true|false}}), so a rerun resolves them again.
ALTER TABLE executions ADD COLUMN secret_refs TEXT;
