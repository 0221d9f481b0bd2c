-- An execution's parameters in a table of their own, written once. SQLite rewrites a whole
-- row on every update, overflow pages included: with the parameters in `executions`, each
-- status change of an execution given 64 MiB of parameters wrote 64 MiB again (0.75 s).
CREATE TABLE execution_parameters (
    execution_id INTEGER PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    parameters   TEXT NOT NULL
);
INSERT INTO execution_parameters (execution_id, parameters) SELECT id, parameters FROM executions;
ALTER TABLE executions DROP COLUMN parameters;
