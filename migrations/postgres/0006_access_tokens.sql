-- Bearer tokens: the SHA-256 of each secret, never the secret. Revoked tokens stay, so that a
-- revoked token is refused as revoked and `token ls` shows it.
CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    secret_sha256 BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    last_used_at_ms BIGINT,
    revoked_at_ms BIGINT
);
