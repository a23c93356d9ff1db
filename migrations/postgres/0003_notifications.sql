-- Notification history: the newest N of each type are kept.
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    source TEXT
);

CREATE INDEX notifications_kind ON notifications (kind, id DESC);
