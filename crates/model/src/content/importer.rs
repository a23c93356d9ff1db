//! UnixFS import: a byte stream becomes the same DAG, block for block, that Kubo's `ipfs add` builds
//! for the same options (fixed-size chunker, balanced layout, 174 links per node).
//!
//! Memory stays bounded: one chunk being filled, a few chunks being hashed, and at most
//! 174 pending links per tree level.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use cid::{Cid, Version};
use futures::StreamExt;

use super::block::{Block, DAG_PB, RAW};
use super::dagpb::{PbLink, UnixFsData, unixfs_block};
use super::store::{BlockBatch, ByteStream};
use crate::error::{Error, Result};

/// Kubo's default chunk size.
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// Smallest chunk size accepted.
pub const MIN_CHUNK_SIZE: usize = 1024;
/// Largest chunk size accepted (Kubo's block size limit).
pub const MAX_CHUNK_SIZE: usize = 1_048_576;
/// Links per internal node in Kubo's balanced layout.
pub const MAX_LINKS: usize = 174;
/// Chunks hashed at once, on blocking threads, so hashing overlaps reading and writing.
const HASHING_IN_FLIGHT: usize = 3;
/// Pieces of input read ahead by a task of their own, so reading goes on while the import waits
/// for a hash or a write.
const PIECES_READ_AHEAD: usize = 4;

/// How content is cut into blocks and addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    cid_version: Version,
    raw_leaves: bool,
    chunk_size: usize,
}

impl Default for ImportOptions {
    /// Kubo's default profile: CIDv0, dag-pb leaves, 256 KiB chunks.
    fn default() -> Self {
        Self {
            cid_version: Version::V0,
            raw_leaves: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ImportOptions {
    /// Options as `ipfs add` takes them: `cid_version` 0 or 1 (1 turns raw leaves on unless
    /// `raw_leaves` says otherwise), `chunker` `size-N`.
    pub fn new(cid_version: Option<u8>, raw_leaves: Option<bool>, chunker: Option<&str>) -> Result<Self> {
        let cid_version = match cid_version.unwrap_or(0) {
            0 => Version::V0,
            1 => Version::V1,
            other => {
                return Err(Error::InvalidOption {
                    option: "cid_version",
                    reason: format!("{other} is not 0 or 1"),
                });
            }
        };
        let raw_leaves = raw_leaves.unwrap_or(cid_version == Version::V1);
        let chunk_size = match chunker {
            None => DEFAULT_CHUNK_SIZE,
            Some(spec) => parse_chunker(spec)?,
        };
        Ok(Self {
            cid_version,
            raw_leaves,
            chunk_size,
        })
    }

    pub fn cid_version(&self) -> Version {
        self.cid_version
    }

    pub fn raw_leaves(&self) -> bool {
        self.raw_leaves
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

fn parse_chunker(spec: &str) -> Result<usize> {
    let invalid = |reason: String| Error::InvalidOption {
        option: "chunker",
        reason,
    };
    let size = spec
        .strip_prefix("size-")
        .ok_or_else(|| invalid(format!("{spec:?} is not size-N (only fixed-size chunking is offered)")))?;
    let size: usize = size
        .parse()
        .map_err(|_| invalid(format!("{spec:?}: {size:?} is not a number")))?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        return Err(invalid(format!(
            "{spec:?}: size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        )));
    }
    Ok(size)
}

/// What an import produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportSummary {
    pub root: Cid,
    /// Bytes of content.
    pub size: u64,
    /// Bytes of the whole DAG (Kubo's cumulative size).
    pub dag_size: u64,
    /// Blocks written.
    pub blocks: u64,
}

/// A node waiting to be linked from its parent.
#[derive(Clone, Copy)]
struct PendingLink {
    cid: Cid,
    /// Block bytes of the node and everything under it.
    dag_size: u64,
    /// Content bytes under the node.
    content_size: u64,
}

/// Builds the balanced tree bottom-up as leaves arrive: a level that reaches 174 links is closed
/// into a node of the level above, so leaves all end at the same depth, as in Kubo.
struct BalancedTree {
    levels: Vec<Vec<PendingLink>>,
    cid_version: Version,
}

impl BalancedTree {
    fn new(cid_version: Version) -> Self {
        Self {
            levels: vec![Vec::with_capacity(MAX_LINKS)],
            cid_version,
        }
    }

    /// Adds a leaf; returns the internal nodes that became complete.
    fn push_leaf(&mut self, leaf: PendingLink) -> Vec<Block> {
        let mut closed = Vec::new();
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len() == MAX_LINKS {
            let children = std::mem::replace(&mut self.levels[level], Vec::with_capacity(MAX_LINKS));
            let (block, link) = self.internal_node(&children);
            closed.push(block);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::with_capacity(MAX_LINKS));
            }
            self.levels[level + 1].push(link);
            level += 1;
        }
        closed
    }

    /// Closes every partial level; returns the remaining blocks and the root link.
    fn finish(mut self) -> (Vec<Block>, PendingLink) {
        let mut closed = Vec::new();
        let mut level = 0;
        loop {
            let higher_levels_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            let here = std::mem::take(&mut self.levels[level]);
            if higher_levels_empty && here.len() == 1 {
                return (closed, here[0]);
            }
            if !here.is_empty() {
                let (block, link) = self.internal_node(&here);
                closed.push(block);
                if self.levels.len() == level + 1 {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(link);
            }
            level += 1;
        }
    }

    fn internal_node(&self, children: &[PendingLink]) -> (Block, PendingLink) {
        let links: Vec<PbLink> = children.iter().map(|c| PbLink::unnamed(&c.cid, c.dag_size)).collect();
        let data = UnixFsData::file_node(children.iter().map(|c| c.content_size).collect());
        let bytes = unixfs_block(&links, &data);
        let block_len = bytes.len() as u64;
        let block = Block::encode(self.cid_version, DAG_PB, bytes);
        let link = PendingLink {
            cid: *block.cid(),
            dag_size: block_len + children.iter().map(|c| c.dag_size).sum::<u64>(),
            content_size: children.iter().map(|c| c.content_size).sum(),
        };
        (block, link)
    }
}

fn leaf_block(chunk: Bytes, options: ImportOptions) -> (Block, PendingLink) {
    let content_size = chunk.len() as u64;
    let block = if options.raw_leaves {
        Block::encode(Version::V1, RAW, chunk)
    } else {
        Block::encode(
            options.cid_version,
            DAG_PB,
            unixfs_block(&[], &UnixFsData::file_leaf(chunk)),
        )
    };
    let link = PendingLink {
        cid: *block.cid(),
        dag_size: block.data().len() as u64,
        content_size,
    };
    (block, link)
}

/// Cuts a stream of arbitrary pieces into chunks of exactly `size` bytes (the last may be shorter).
struct Chunker {
    size: usize,
    pending: BytesMut,
}

impl Chunker {
    fn new(size: usize) -> Self {
        Self {
            size,
            pending: BytesMut::new(),
        }
    }

    fn push(&mut self, mut piece: Bytes, out: &mut Vec<Bytes>) {
        if self.pending.is_empty() {
            // Whole chunks straight from the input, without copying.
            while piece.len() >= self.size {
                out.push(piece.split_to(self.size));
            }
        }
        while !piece.is_empty() {
            let take = (self.size - self.pending.len()).min(piece.len());
            self.pending.extend_from_slice(&piece.split_to(take));
            if self.pending.len() == self.size {
                out.push(self.pending.split().freeze());
            }
        }
    }

    fn finish(self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.freeze())
    }
}

/// Imports a byte stream into `batch`; the caller commits the batch. Fails with `TooLarge` once more
/// than `limit` bytes arrive.
pub async fn import(
    input: ByteStream,
    options: ImportOptions,
    batch: &mut dyn BlockBatch,
    limit: Option<u64>,
) -> Result<ImportSummary> {
    let mut chunker = Chunker::new(options.chunk_size);
    let mut tree = BalancedTree::new(options.cid_version);
    let mut hashing: VecDeque<tokio::task::JoinHandle<(Block, PendingLink)>> = VecDeque::new();
    let mut size = 0u64;
    let mut blocks = 0u64;
    let mut chunks = Vec::new();

    let (mut input, _reading) = read_ahead(input);
    let mut input_done = false;
    while !input_done {
        match input.recv().await {
            Some(piece) => {
                let piece = piece?;
                size += piece.len() as u64;
                if let Some(limit) = limit.filter(|limit| size > *limit) {
                    return Err(Error::TooLarge { limit });
                }
                chunker.push(piece, &mut chunks);
            }
            None => {
                input_done = true;
                let last = std::mem::replace(&mut chunker, Chunker::new(options.chunk_size)).finish();
                match last {
                    Some(last) => chunks.push(last),
                    // An empty input is one empty leaf, as in Kubo.
                    None if size == 0 => chunks.push(Bytes::new()),
                    None => {}
                }
            }
        }
        for chunk in chunks.drain(..) {
            if hashing.len() >= HASHING_IN_FLIGHT {
                let (leaf, link) = join(hashing.pop_front()).await?;
                blocks += store_leaf(batch, &mut tree, leaf, link).await?;
            }
            hashing.push_back(tokio::task::spawn_blocking(move || leaf_block(chunk, options)));
        }
    }
    while let Some(job) = hashing.pop_front() {
        let (leaf, link) = join(Some(job)).await?;
        blocks += store_leaf(batch, &mut tree, leaf, link).await?;
    }

    let (closing, root) = tree.finish();
    for block in closing {
        batch.put(block).await?;
        blocks += 1;
    }
    Ok(ImportSummary {
        root: root.cid,
        size,
        dag_size: root.dag_size,
        blocks,
    })
}

/// Reads `input` on a task of its own, up to [`PIECES_READ_AHEAD`] pieces ahead; the task stops
/// after an error, at the end, or when the returned guard is dropped.
fn read_ahead(mut input: ByteStream) -> (tokio::sync::mpsc::Receiver<Result<Bytes>>, AbortOnDrop) {
    let (pieces, received) = tokio::sync::mpsc::channel(PIECES_READ_AHEAD);
    let reading = tokio::spawn(async move {
        while let Some(piece) = input.next().await {
            let failed = piece.is_err();
            if pieces.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    (received, AbortOnDrop(reading))
}

/// Aborts a task when dropped (an import that fails or is dropped stops reading its input).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn join(job: Option<tokio::task::JoinHandle<(Block, PendingLink)>>) -> Result<(Block, PendingLink)> {
    job.expect("a job is in flight")
        .await
        .map_err(|e| Error::task("hashing", e))
}

async fn store_leaf(
    batch: &mut dyn BlockBatch,
    tree: &mut BalancedTree,
    leaf: Block,
    link: PendingLink,
) -> Result<u64> {
    batch.put(leaf).await?;
    let closed = tree.push_leaf(link);
    let written = 1 + closed.len() as u64;
    for block in closed {
        batch.put(block).await?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_kubo_defaults_and_reject_bad_values() {
        let default = ImportOptions::new(None, None, None).unwrap();
        assert_eq!(default, ImportOptions::default());
        let v1 = ImportOptions::new(Some(1), None, None).unwrap();
        assert!(v1.raw_leaves());
        let v1_pb = ImportOptions::new(Some(1), Some(false), Some("size-1024")).unwrap();
        assert!(!v1_pb.raw_leaves());
        assert_eq!(v1_pb.chunk_size(), 1024);
        for (bad, option) in [
            (ImportOptions::new(Some(2), None, None), "cid_version"),
            (ImportOptions::new(None, None, Some("rabin")), "chunker"),
            (ImportOptions::new(None, None, Some("size-1023")), "chunker"),
            (ImportOptions::new(None, None, Some("size-1048577")), "chunker"),
            (ImportOptions::new(None, None, Some("size-abc")), "chunker"),
        ] {
            match bad {
                Err(Error::InvalidOption { option: named, .. }) => assert_eq!(named, option),
                other => panic!("expected an invalid {option}, got {other:?}"),
            }
        }
    }

    #[test]
    fn chunker_cuts_exact_sizes_whatever_the_pieces() {
        let mut chunker = Chunker::new(4);
        let mut out = Vec::new();
        for piece in [&b"ab"[..], b"cdefghij", b"k", b""] {
            chunker.push(Bytes::copy_from_slice(piece), &mut out);
        }
        assert_eq!(out, vec![Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]);
        assert_eq!(chunker.finish(), Some(Bytes::from_static(b"ijk")));
    }
}
