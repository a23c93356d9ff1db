-- The instance that published each event: instances sharing one database relay each other's
-- events from this table, and skip their own.
ALTER TABLE notifications ADD COLUMN instance TEXT;
