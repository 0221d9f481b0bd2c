-- A status change is announced with the new status after the execution's id
-- (`<id> <status>`): a server following the execution knows it without reading it back.
CREATE OR REPLACE FUNCTION attune_status_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('attune_status', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
