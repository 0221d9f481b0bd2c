-- A large parameter document (over 1 MiB) is stored in chunks of at most 1 MiB, in order,
-- and its row in `execution_parameters` holds '' (never a JSON document). Written and read
-- a chunk at a time, it is never held whole by SQLite or the driver: a single 64 MiB
-- value was copied in full by the bind, by the record and by the read.
CREATE TABLE execution_parameter_chunks (
    execution_id INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    chunk        TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
