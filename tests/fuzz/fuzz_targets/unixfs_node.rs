//! A dag-pb block as a UnixFS node: file, directory, HAMT shard or symlink.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use model::content::Block;
use model::content::node::Node;

const DAG_PB: u64 = 0x70;

fuzz_target!(|data: &[u8]| {
    let block = Block::encode(cid::Version::V1, DAG_PB, Bytes::copy_from_slice(data));
    let _ = Node::parse(&block);
});
