-- Output of executions running on a worker process other than the API server's: the
-- worker appends it here as it is printed (already masked), so any server can stream it
-- live. Swept some minutes after the execution ends (its stdout and stderr are in
-- `executions`).
CREATE TABLE output_chunks (
    execution_id INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    stream       TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    data         BLOB NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
