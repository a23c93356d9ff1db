//! Range reads of UnixFS files: only the blocks a range touches are fetched, each verified.

use std::collections::HashSet;

use bytes::Bytes;
use cid::Cid;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::block::{Block, RAW};
use super::blocks::Blocks;
use super::car_feed::CarFeed;
use super::node::{FileChild, Node};
use super::remote::Remote;
use super::store::ByteStream;
use super::store::storage_key;
use crate::error::{Error, Result};

/// Sibling blocks fetched ahead of the one being sent, so a remote store's latency overlaps.
const READ_AHEAD: usize = 4;
/// Ranges at least this long, read from an upstream as a CAR, bring as many bytes again after
/// them (the media sources read in 256 KiB windows).
const READ_AHEAD_FROM: u64 = 256 * 1024;

/// A half-open range of content bytes, `start..end`; `end: None` means to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ByteRange {
    start: u64,
    end: Option<u64>,
    /// The reader reads ahead itself when it needs to: an upstream is asked for this range alone.
    without_read_ahead: bool,
}

impl ByteRange {
    /// Everything.
    pub fn full() -> Self {
        Self::default()
    }

    /// `length` bytes from `offset` (to the end when `length` is `None`).
    pub fn new(offset: u64, length: Option<u64>) -> Self {
        Self {
            start: offset,
            end: length.map(|len| offset.saturating_add(len)),
            without_read_ahead: false,
        }
    }

    /// The range alone, for a reader that reads its next window ahead itself once reads are slow
    /// (a media source): what an upstream sends ahead of a viewer who then leaves is fetched for
    /// nothing.
    pub fn without_read_ahead(self) -> Self {
        Self {
            without_read_ahead: true,
            ..self
        }
    }

    /// Whether a range read from an upstream may bring the bytes after it too.
    pub fn reads_ahead(&self) -> bool {
        !self.without_read_ahead
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// The range cut to a content of `size` bytes: `(start, end)`, or `RangeNotSatisfiable`
    /// when it starts past the end.
    pub fn clamp(&self, cid: &Cid, size: u64) -> Result<(u64, u64)> {
        if self.start > size {
            return Err(Error::RangeNotSatisfiable {
                cid: *cid,
                start: self.start,
                size,
            });
        }
        Ok((self.start, self.end.unwrap_or(size).min(size)))
    }
}

type Fetched = BoxStream<'static, Result<(Block, u64)>>;

/// Streams content bytes `start..end` of the file at `root` (a block already fetched and parsed).
/// When the blocks it needs are missing here and upstreams are configured, the range comes as one
/// CAR from an upstream that serves CARs, else block by block. For a range of 256 KiB or more the
/// CAR also asks for as many bytes again after it (unless `read_ahead` is off), kept in the
/// background once the range is sent: a reader that goes on where it stopped (a download in
/// windows) finds them here.
pub fn read_file_range(blocks: Blocks, root: Block, start: u64, end: u64, read_ahead: bool) -> ByteStream {
    if blocks.remote().is_none() || start >= end {
        return read_by_blocks(blocks, root, start, end);
    }
    let stream = async_stream::try_stream! {
        let remote = blocks.remote().cloned().expect("checked above");
        let size = match Node::parse(&root)? {
            Node::File { size, .. } => size,
            other => Err(Error::WrongKind { cid: *root.cid(), expected: "file", actual: other.kind().as_str() })?,
        };
        blocks.first_bytes_arrived(root.cid(), start).await;
        let missing = !ends_at_hand(&blocks, &root, start, end).await?;
        // A reader in windows of a block or more (a player, a download) is likely to go on; a
        // small range is more often one of a kind (a seek, a probe): it brings nothing ahead.
        let ahead = if read_ahead && end - start >= READ_AHEAD_FROM { end - start } else { 0 };
        let ahead_end = end.saturating_add(ahead).min(size);
        let mut feed = None;
        if missing
            && let Some(mut opened) = remote.open_car(root.cid(), start, ahead_end - 1).await
            // The CAR starts with the file's root, which is here already.
            && opened.next_expected(&remote, root.cid()).await.is_some()
        {
            feed = Some(opened);
        }
        let Some(feed) = feed else {
            let mut rest = read_by_blocks(blocks, root, start, end);
            while let Some(part) = rest.next().await {
                yield part?;
            }
            return;
        };
        let mut walk = CarWalk::new(blocks.clone(), remote, feed, root.clone(), start, ahead_end);
        let mut sent = start;
        loop {
            let (block, base) = match walk.next().await? {
                Walked::Block(block, base) => (block, base),
                Walked::Done => break,
                Walked::Failed => {
                    // The CAR failed us: the rest of the range, block by block.
                    let mut rest = read_by_blocks(blocks.clone(), root.clone(), sent, end);
                    while let Some(part) = rest.next().await {
                        yield part?;
                    }
                    return;
                }
            };
            if base >= end {
                // Past the range: the blocks ahead are kept while the reader goes on.
                tokio::spawn(walk.drain());
                break;
            }
            let data = file_parts(&block)?.0;
            if let Some(part) = overlap(&data, base, start, end) {
                sent = base + (data.len() as u64).min(end - base);
                yield part;
            }
        }
    };
    stream.map_err(|e: Error| e).boxed()
}

/// Whether the blocks holding the first and the last byte of `start..end` are here, and the nodes
/// on the way to them: a range read earlier leaves the blocks around it, and a whole read leaves
/// them all. (The root's own children are not enough: in a file of more than one level they are
/// the inner nodes, which the first read of the file brings.)
async fn ends_at_hand(blocks: &Blocks, root: &Block, start: u64, end: u64) -> Result<bool> {
    for offset in [start, end - 1] {
        let mut node = root.clone();
        let mut base = 0;
        loop {
            let (data, children) = file_parts(&node)?;
            let Some((child, child_base)) =
                children_overlapping(&children, base + data.len() as u64, offset, offset + 1)
                    .into_iter()
                    .next()
            else {
                break;
            };
            if !blocks.at_hand(&child.cid).await? {
                return Ok(false);
            }
            if child.cid.codec() == RAW {
                break;
            }
            node = blocks.get(&child.cid).await?;
            base = child_base;
        }
    }
    Ok(true)
}

/// The walk of a file's DAG over `start..end`, depth first, with its blocks taken from a CAR in
/// the same order.
pub(crate) struct CarWalk {
    blocks: Blocks,
    remote: std::sync::Arc<Remote>,
    feed: CarFeed,
    received: HashSet<Cid>,
    /// Blocks still to visit, last first, with the content offset each starts at.
    stack: Vec<(Cid, u64)>,
    /// The block to visit first (the root, already here).
    next: Option<(Block, u64)>,
    start: u64,
    end: u64,
}

enum Walked {
    Block(Block, u64),
    Done,
    /// The CAR held something else than the walk needs, or broke off.
    Failed,
}

impl CarWalk {
    /// A walk of `root`'s file over `start..end` whose next blocks come from `feed` (the root was
    /// taken from it already).
    pub(crate) fn new(
        blocks: Blocks,
        remote: std::sync::Arc<Remote>,
        feed: CarFeed,
        root: Block,
        start: u64,
        end: u64,
    ) -> Self {
        Self {
            blocks,
            remote,
            feed,
            received: HashSet::new(),
            stack: Vec::new(),
            next: Some((root, 0)),
            start,
            end,
        }
    }

    /// Takes every block of the walk, keeping each (for a CAR read ahead of any reader).
    /// Boxed: a walk reads blocks, and reading a block may start such a walk.
    pub(crate) fn drain(mut self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { while let Ok(Walked::Block(..)) = self.next().await {} })
    }

    async fn next(&mut self) -> Result<Walked> {
        let (block, base) = match self.next.take() {
            Some(first) => first,
            None => {
                let Some((cid, base)) = self.stack.pop() else {
                    return Ok(Walked::Done);
                };
                let key = storage_key(&cid);
                // A block met twice in the DAG comes once in the CAR (dups=n); identity blocks
                // are inline in their CIDs, never in a CAR.
                let block = if self.received.contains(&key) || cid.hash().code() == 0 {
                    self.blocks.get(&cid).await?
                } else if let Some(block) = self.feed.next_expected(&self.remote, &cid).await {
                    self.blocks.accept_fetched(&block);
                    block
                } else {
                    return Ok(Walked::Failed);
                };
                self.received.insert(key);
                (block, base)
            }
        };
        let (data, children) = file_parts(&block)?;
        for (child, offset) in children_overlapping(&children, base + data.len() as u64, self.start, self.end)
            .into_iter()
            .rev()
        {
            self.stack.push((child.cid, offset));
        }
        Ok(Walked::Block(block, base))
    }
}

/// [`read_file_range`] one block at a time, several ahead of the one being sent.
fn read_by_blocks(blocks: Blocks, root: Block, start: u64, end: u64) -> ByteStream {
    let stream = async_stream::try_stream! {
        if start >= end {
            return;
        }
        // A stack of sibling streams, deepest last; each item is a fetched block and the content
        // offset where it begins.
        let mut stack: Vec<Fetched> = vec![stream::once(async move { Ok((root, 0)) }).boxed()];
        while let Some(top) = stack.last_mut() {
            let Some(next) = top.next().await else {
                stack.pop();
                continue;
            };
            let (block, base) = next?;
            let (data, children) = file_parts(&block)?;
            if let Some(part) = overlap(&data, base, start, end) {
                yield part;
            }
            let wanted = children_overlapping(&children, base + data.len() as u64, start, end);
            if !wanted.is_empty() {
                let blocks = blocks.clone();
                stack.push(
                    stream::iter(wanted)
                        .map(move |(child, offset)| {
                            let blocks = blocks.clone();
                            async move { blocks.get(&child.cid).await.map(|b| (b, offset)) }
                        })
                        .buffered(READ_AHEAD)
                        .boxed(),
                );
            }
        }
    };
    stream.map_err(|e: Error| e).boxed()
}

fn file_parts(block: &Block) -> Result<(Bytes, Vec<FileChild>)> {
    match Node::parse(block)? {
        Node::File { data, children, .. } => Ok((data, children)),
        other => Err(Error::WrongKind {
            cid: *block.cid(),
            expected: "file",
            actual: other.kind().as_str(),
        }),
    }
}

/// The part of `data` (content bytes at `base..`) inside `start..end`.
fn overlap(data: &Bytes, base: u64, start: u64, end: u64) -> Option<Bytes> {
    let len = data.len() as u64;
    let from = start.max(base);
    let to = end.min(base + len);
    (from < to).then(|| data.slice((from - base) as usize..(to - base) as usize))
}

/// The children of a file node (whose own data ends at `offset`) holding bytes of `start..end`, each
/// with the content offset it starts at.
pub(crate) fn children_overlapping(
    children: &[FileChild],
    mut offset: u64,
    start: u64,
    end: u64,
) -> Vec<(FileChild, u64)> {
    let mut wanted = Vec::new();
    for child in children {
        let child_end = offset + child.size;
        if child_end > start && offset < end && child.size > 0 {
            wanted.push((*child, offset));
        }
        if offset >= end {
            break;
        }
        offset = child_end;
    }
    wanted
}
