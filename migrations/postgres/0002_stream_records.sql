-- One row per streaming operation (gateway, WebSocket, SSE, WebRTC; inbound or outbound).
CREATE TABLE stream_records (
    id BIGSERIAL PRIMARY KEY,
    stream_type TEXT NOT NULL,
    direction TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    chunks BIGINT NOT NULL,
    chunk_size BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    correlation_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL
);

CREATE INDEX stream_records_started ON stream_records (started_at_ms DESC);
CREATE INDEX stream_records_type ON stream_records (stream_type, started_at_ms DESC);
