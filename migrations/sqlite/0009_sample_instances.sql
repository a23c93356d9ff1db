-- The instance that sampled each value: instances sharing one database each chart their own
-- series instead of averaging each other's.
ALTER TABLE metric_samples ADD COLUMN instance TEXT;
ALTER TABLE anomalies ADD COLUMN instance TEXT;
