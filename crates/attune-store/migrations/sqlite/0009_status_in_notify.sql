-- PostgreSQL's status announcements now carry the status. SQLite has no announcements (a
-- server's own waiters are told directly). Kept so both backends have the same versions.
SELECT 1;
