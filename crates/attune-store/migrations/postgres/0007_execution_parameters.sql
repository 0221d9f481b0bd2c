-- An execution's parameters in a table of their own, written once, as on SQLite (where a
-- status change rewrote the whole row, parameters included); one schema for both backends.
CREATE TABLE execution_parameters (
    execution_id BIGINT PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    parameters   TEXT NOT NULL
);
INSERT INTO execution_parameters (execution_id, parameters) SELECT id, parameters FROM executions;
ALTER TABLE executions DROP COLUMN parameters;
