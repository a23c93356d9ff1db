//! Range reads of UnixFS files: only the blocks a range touches are fetched, each verified.

use bytes::Bytes;
use cid::Cid;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::block::Block;
use super::blocks::Blocks;
use super::node::{FileChild, Node};
use super::store::ByteStream;
use crate::error::{Error, Result};

/// Sibling blocks fetched ahead of the one being sent, so a remote store's latency overlaps.
const READ_AHEAD: usize = 4;

/// A half-open range of content bytes, `start..end`; `end: None` means to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ByteRange {
    start: u64,
    end: Option<u64>,
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
        }
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
pub fn read_file_range(blocks: Blocks, root: Block, start: u64, end: u64) -> ByteStream {
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
