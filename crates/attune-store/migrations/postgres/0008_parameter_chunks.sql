-- A large parameter document (over 1 MiB) is stored in chunks of at most 1 MiB, in order,
-- and its row in `execution_parameters` holds '' (never a JSON document): written and read
-- a chunk at a time, as on SQLite.
CREATE TABLE execution_parameter_chunks (
    execution_id BIGINT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    chunk        TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
