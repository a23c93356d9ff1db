-- Where each block of the embedded store lives: the pack file under `blocks/` and the byte range of
-- its data in it. The key is the block's multihash (the store is keyed by multihash, as Kubo's is).
CREATE TABLE blocks (
    key BLOB PRIMARY KEY NOT NULL,
    pack TEXT NOT NULL,
    data_offset INTEGER NOT NULL,
    data_length INTEGER NOT NULL
) WITHOUT ROWID;

-- Garbage collection sums the live bytes of each pack, and compaction moves one pack's blocks.
CREATE INDEX blocks_by_pack ON blocks (pack);
