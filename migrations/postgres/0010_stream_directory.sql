-- The WebRTC streams of instances sharing one database, and each instance's last beat: an
-- instance lists the others' streams, plays them from their spec, and ends those of an instance
-- gone silent.
CREATE TABLE instances (
    instance TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    beat_at_ms BIGINT NOT NULL
);

CREATE TABLE webrtc_streams (
    stream_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    info TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT
);

CREATE INDEX webrtc_streams_by_end ON webrtc_streams (ended_at_ms);
