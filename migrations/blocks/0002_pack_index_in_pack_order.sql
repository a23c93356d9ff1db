-- A read looks a block up with the blocks after it in its pack (a file's blocks are read in the
-- order an import wrote them): this index answers that from its own pages, in pack order, as it
-- answers garbage collection's sums per pack.
DROP INDEX blocks_by_pack;
CREATE INDEX blocks_by_pack ON blocks (pack, data_offset, data_length);
