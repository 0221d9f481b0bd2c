-- Whether a worker process holds the key that opens secret parameters (`--secret-key-file`):
-- one that does not leaves executions with secrets to those that do.
ALTER TABLE workers ADD COLUMN holds_key INTEGER NOT NULL DEFAULT 1;
