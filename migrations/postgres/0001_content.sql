-- Roots the server was given (uploads, CAR imports, pins). The PostgreSQL twin of sqlite/0001_content.sql.
CREATE TABLE content (
    cid TEXT PRIMARY KEY NOT NULL,
    size BIGINT NOT NULL,
    name TEXT,
    content_type TEXT,
    cid_version INTEGER NOT NULL,
    blocks BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    pinned BOOLEAN NOT NULL
);

CREATE INDEX content_created_at ON content (created_at_ms DESC);
CREATE INDEX content_pinned ON content (pinned);
