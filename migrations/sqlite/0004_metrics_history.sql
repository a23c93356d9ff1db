-- Sampled server series (one row per metric per sample) and the anomalies found in them.
CREATE TABLE metric_samples (
    metric TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);

CREATE INDEX metric_samples_by_metric ON metric_samples (metric, at_ms);
CREATE INDEX metric_samples_by_time ON metric_samples (at_ms);

CREATE TABLE anomalies (
    id INTEGER PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    expected_low DOUBLE PRECISION NOT NULL,
    expected_high DOUBLE PRECISION NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    detector TEXT NOT NULL
);

CREATE INDEX anomalies_by_time ON anomalies (at_ms);
