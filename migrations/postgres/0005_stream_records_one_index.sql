-- Every stream writes a row, so every index is paid for on the busiest path. Queries by type walk
-- the time index and filter: they read at most their LIMIT of matching rows.
DROP INDEX stream_records_type;
