-- Blocks kept from upstream gateways as cache (storage keys: CIDv1 raw over the multihash), so that
-- the least recently fetched can be evicted to stay within the cache budget, across restarts.
CREATE TABLE cached_blocks (
    key TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    fetched_at_ms BIGINT NOT NULL
);
CREATE INDEX cached_blocks_by_age ON cached_blocks (fetched_at_ms);
