-- Every status change of an execution is announced on the `attune_status` channel with the
-- execution's id (delivered at COMMIT), whichever process made it: a server following an
-- execution that a worker on another host runs is woken by it instead of polling.
CREATE FUNCTION attune_status_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('attune_status', NEW.id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER executions_status_notify
    AFTER UPDATE OF status ON executions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION attune_status_notify();
