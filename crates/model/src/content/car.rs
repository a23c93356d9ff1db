//! CAR v1: export a DAG as one stream, import one with every block verified and the DAG checked
//! complete before anything becomes visible.

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use iroh_car::{CarHeader, CarReader};
use prost::encoding::encode_varint;
use tokio_util::io::StreamReader;

use super::block::{Block, DAG_PB, check_supported};
use super::blocks::Blocks;
use super::dagpb::PbNode;
use super::node::Node;
use super::reader::children_overlapping;
use super::store::{BlockBatch, ByteStream, storage_key};
use crate::error::{Error, Result};

const IDENTITY: u64 = 0x00;

/// What a CAR import stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarImport {
    pub roots: Vec<Cid>,
    pub blocks: u64,
    pub bytes: u64,
}

/// Which blocks under the target of a path a CAR carries (the trustless gateway's `dag-scope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CarScope {
    /// The whole DAG under the target.
    #[default]
    All,
    /// What it takes to read the target: a file's blocks (only those a byte range needs, when
    /// given), a directory's node, every shard node of a HAMT directory (not its entries).
    Entity(Option<EntityBytes>),
    /// The target's block alone.
    Block,
}

/// A byte range of a file entity, as `entity-bytes=from:to` gives it: both ends inclusive, a
/// negative end counts from the end of the file, `to: None` (`*`) is the last byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityBytes {
    pub from: i64,
    pub to: Option<i64>,
}

impl EntityBytes {
    /// Parses `from:to` (`0:1023`, `-1024:*`, `100:-1`).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidOption {
            option: "entity-bytes",
            reason: format!("{text:?}: {reason}"),
        };
        let (from, to) = text.split_once(':').ok_or_else(|| invalid("expected from:to"))?;
        let from: i64 = from.parse().map_err(|_| invalid("from is not an integer"))?;
        let to = match to {
            "*" => None,
            to => Some(to.parse::<i64>().map_err(|_| invalid("to is not an integer or *"))?),
        };
        // A `to` before `from` is an empty range (the entity's root alone), as an end past the
        // file is cut to it.
        Ok(Self { from, to })
    }

    /// The half-open range `start..end` of a file of `size` bytes (empty when it falls outside).
    pub fn resolve(&self, size: u64) -> (u64, u64) {
        let at = |n: i64| {
            if n >= 0 {
                (n as u64).min(size)
            } else {
                size.saturating_sub(n.unsigned_abs())
            }
        };
        let start = at(self.from);
        let end = match self.to {
            None => size,
            Some(to) => at(to).saturating_add(1).min(size),
        };
        (start, end.max(start))
    }
}

/// The DAG under `root` as a CAR v1 stream, depth-first, each block once (identity blocks are
/// inline in their CIDs and not written).
pub fn export(blocks: Blocks, root: Cid) -> ByteStream {
    export_scoped(blocks, root, Vec::new(), root, CarScope::All)
}

/// A CAR whose root is `root`: first the `path` blocks (those that lead from `root` to `target`),
/// then the blocks under `target` that `scope` asks for, as the trustless gateway serves a path.
pub fn export_scoped(blocks: Blocks, root: Cid, path: Vec<Cid>, target: Cid, scope: CarScope) -> ByteStream {
    async_stream::try_stream! {
        let header = CarHeader::new_v1(vec![root])
            .encode()
            .map_err(|e| Error::Store(format!("encoding a CAR header: {e}")))?;
        yield length_prefixed(&[&header]);
        let mut seen = HashSet::new();
        for cid in path {
            if cid.hash().code() != IDENTITY && seen.insert(storage_key(&cid)) {
                let block = blocks.get(&cid).await?;
                yield length_prefixed(&[&cid.to_bytes(), block.data()]);
            }
        }
        // Depth first, children in link order; each entry carries the content offset a file
        // block starts at (for entity-bytes).
        let mut stack = vec![(target, 0u64)];
        let mut range: Option<(u64, u64)> = None;
        while let Some((cid, base)) = stack.pop() {
            if cid.hash().code() == IDENTITY || !seen.insert(storage_key(&cid)) {
                continue;
            }
            let block = blocks.get(&cid).await?;
            match scope {
                CarScope::Block => {}
                CarScope::All => {
                    if cid.codec() == DAG_PB {
                        let node = PbNode::decode_block(&cid, block.data().clone())?;
                        for link in node.links.iter().rev() {
                            stack.push((link.target(&cid)?, 0));
                        }
                    }
                }
                CarScope::Entity(bytes) => match Node::parse(&block)? {
                    Node::File { data, children, size } => {
                        let (start, end) = *range.get_or_insert_with(|| match bytes {
                            Some(bytes) => bytes.resolve(size),
                            None => (0, size),
                        });
                        let wanted = children_overlapping(&children, base + data.len() as u64, start, end);
                        for (child, offset) in wanted.into_iter().rev() {
                            stack.push((child.cid, offset));
                        }
                    }
                    Node::HamtShard { links, fanout } => {
                        // Links named by the bucket alone lead to shards; the others to entries.
                        let prefix_len = super::directory::hamt_prefix_len(fanout);
                        for link in links.iter().rev().filter(|l| l.name.len() == prefix_len) {
                            stack.push((link.cid, 0));
                        }
                    }
                    Node::Directory { .. } | Node::Symlink { .. } => {}
                },
            }
            yield length_prefixed(&[&cid.to_bytes(), block.data()]);
        }
    }
    .boxed()
}

fn length_prefixed(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(len + 10);
    let mut prefix = Vec::with_capacity(10);
    encode_varint(len as u64, &mut prefix);
    out.put_slice(&prefix);
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// Reads a CAR v1 stream into `batch`, verifying every block, and checks that every root and every
/// block linked from a dag-pb block is either in the CAR or already stored. The caller commits.
pub async fn import(blocks: &Blocks, input: ByteStream, batch: &mut dyn BlockBatch) -> Result<CarImport> {
    let reader = StreamReader::new(input.map_err(|e| std::io::Error::other(e.to_string())));
    let mut car = CarReader::new(reader).await.map_err(car_error)?;
    let roots = car.header().roots().to_vec();
    let mut received = HashSet::new();
    let mut referenced = Vec::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    while let Some((cid, data)) = car.next_block().await.map_err(car_error)? {
        check_supported(&cid)?;
        let block = Block::verified(cid, data.into()).map_err(|e| match e {
            Error::HashMismatch(cid) => Error::InvalidCar(format!("block {cid} does not match its CID")),
            other => other,
        })?;
        if cid.codec() == DAG_PB {
            let node = PbNode::decode_block(&cid, block.data().clone())?;
            for link in &node.links {
                referenced.push(link.target(&cid)?);
            }
        }
        received.insert(storage_key(&cid));
        count += 1;
        bytes += block.data().len() as u64;
        batch.put(block).await?;
    }
    let first_root = roots[0];
    for cid in roots.iter().chain(&referenced) {
        if !received.contains(&storage_key(cid)) && !blocks.has(cid).await? {
            return Err(Error::IncompleteDag {
                root: Box::new(first_root),
                missing: Box::new(*cid),
            });
        }
    }
    Ok(CarImport {
        roots,
        blocks: count,
        bytes,
    })
}

fn car_error(e: iroh_car::Error) -> Error {
    match e {
        iroh_car::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::InvalidCar("truncated: the stream ends inside a block".into())
        }
        iroh_car::Error::Parsing(msg) if msg.contains("eof") => {
            Error::InvalidCar(format!("truncated: the stream ends inside a block ({msg})"))
        }
        other => Error::InvalidCar(other.to_string()),
    }
}
