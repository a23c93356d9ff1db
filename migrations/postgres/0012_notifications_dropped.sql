-- The newest id of each notification type that the history no longer holds (deleted past the
-- newest N of its type, or let go before it was written): a client resuming after an older id is
-- told that it missed events of that type.
CREATE TABLE notifications_dropped (
    kind TEXT PRIMARY KEY,
    through_id BIGINT NOT NULL
);
