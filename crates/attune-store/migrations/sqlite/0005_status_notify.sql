-- Nothing on SQLite: PostgreSQL's 0005 announces status changes to other processes, and on
-- SQLite the server is the only process (the store announces its own changes in process).
-- Kept so both backends have the same versions.
SELECT 1;
