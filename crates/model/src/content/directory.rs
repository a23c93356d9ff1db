//! Directories: listing entries and resolving paths, through plain and HAMT-sharded directories.

use cid::Cid;

use super::blocks::Blocks;
use super::node::{NamedLink, Node};
use crate::error::{Error, Result};

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub cid: Cid,
    /// Bytes of the entry's whole DAG, as its link records it.
    pub tsize: u64,
}

/// The entries of the directory at `cid`, in link order (shards flattened in bucket order).
pub async fn list(blocks: &Blocks, cid: &Cid) -> Result<Vec<DirEntry>> {
    let block = blocks.get(cid).await?;
    match Node::parse(&block)? {
        Node::Directory { links } => Ok(links.into_iter().map(entry).collect()),
        Node::HamtShard { links, fanout } => {
            let mut entries = Vec::new();
            // Depth-first over sub-shards, with an explicit stack to keep the future small.
            let mut pending = vec![(links, fanout)];
            while let Some((links, fanout)) = pending.pop() {
                let prefix_len = hamt_prefix_len(fanout);
                let mut subshards = Vec::new();
                for link in links {
                    if link.name.len() == prefix_len {
                        subshards.push(link.cid);
                    } else {
                        entries.push(DirEntry {
                            name: link.name.get(prefix_len..).unwrap_or_default().to_owned(),
                            cid: link.cid,
                            tsize: link.tsize,
                        });
                    }
                }
                for shard in subshards.into_iter().rev() {
                    match Node::parse(&blocks.get(&shard).await?)? {
                        Node::HamtShard { links, fanout } => pending.push((links, fanout)),
                        other => return Err(not_a_shard(&shard, &other)),
                    }
                }
            }
            Ok(entries)
        }
        other => Err(Error::WrongKind {
            cid: *cid,
            expected: "directory",
            actual: other.kind().as_str(),
        }),
    }
}

/// The CIDs along `path` under `root` (segments already split and percent-decoded): the root first,
/// then the CID each segment resolves to, the target last.
pub async fn resolve(blocks: &Blocks, root: &Cid, path: &[String]) -> Result<Vec<Cid>> {
    Ok(resolve_visiting(blocks, root, path).await?.0)
}

/// [`resolve`], and every block read on the way (directories and HAMT shards, in order): the blocks
/// a verifier needs to check the path.
pub async fn resolve_visiting(blocks: &Blocks, root: &Cid, path: &[String]) -> Result<(Vec<Cid>, Vec<Cid>)> {
    let mut trail = vec![*root];
    let mut visited = Vec::new();
    for name in path.iter().filter(|s| !s.is_empty()) {
        let next = lookup(
            blocks,
            trail.last().expect("the trail starts with the root"),
            name,
            &mut visited,
        )
        .await?;
        trail.push(next);
    }
    Ok((trail, visited))
}

async fn lookup(blocks: &Blocks, dir: &Cid, name: &str, visited: &mut Vec<Cid>) -> Result<Cid> {
    visited.push(*dir);
    let not_found = || Error::NoSuchPath {
        parent: *dir,
        name: name.to_owned(),
    };
    match Node::parse(&blocks.get(dir).await?)? {
        Node::Directory { links } => links
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.cid)
            .ok_or_else(not_found),
        Node::HamtShard { mut links, mut fanout } => {
            let hash = hamt_hash(name.as_bytes());
            let mut bits = BitReader::new(&hash);
            loop {
                let prefix_len = hamt_prefix_len(fanout);
                let index = bits.take(fanout.trailing_zeros()).ok_or_else(not_found)?;
                let prefix = format!("{index:0prefix_len$X}");
                let Some(link) = links.iter().find(|l| l.name.starts_with(&prefix)) else {
                    return Err(not_found());
                };
                if link.name.len() == prefix_len {
                    let shard = link.cid;
                    visited.push(shard);
                    match Node::parse(&blocks.get(&shard).await?)? {
                        Node::HamtShard { links: l, fanout: f } => (links, fanout) = (l, f),
                        other => return Err(not_a_shard(&shard, &other)),
                    }
                    continue;
                }
                return links
                    .iter()
                    .filter(|l| l.name.starts_with(&prefix))
                    .find(|l| &l.name[prefix_len..] == name)
                    .map(|l| l.cid)
                    .ok_or_else(not_found);
            }
        }
        // A file (or raw block) has no entries: the path does not exist, as a gateway says it.
        _ => Err(not_found()),
    }
}

fn entry(link: NamedLink) -> DirEntry {
    DirEntry {
        name: link.name,
        cid: link.cid,
        tsize: link.tsize,
    }
}

fn not_a_shard(cid: &Cid, node: &Node) -> Error {
    Error::MalformedBlock {
        cid: *cid,
        reason: format!(
            "a HAMT shard links to a {} where a sub-shard belongs",
            node.kind().as_str()
        ),
    }
}

/// Hex digits of a bucket index: as many as `fanout - 1` has.
pub(crate) fn hamt_prefix_len(fanout: u64) -> usize {
    format!("{:X}", fanout - 1).len()
}

/// The first 64 bits of murmur3-x64-128 (seed 0), big-endian, as go-unixfs hashes names.
fn hamt_hash(name: &[u8]) -> [u8; 8] {
    let full = murmur3::murmur3_x64_128(&mut std::io::Cursor::new(name), 0).expect("reading a slice cannot fail");
    (full as u64).to_be_bytes()
}

/// Reads bits most-significant first, as the HAMT consumes its hash.
struct BitReader<'a> {
    bytes: &'a [u8],
    position: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    fn take(&mut self, count: u32) -> Option<u64> {
        if (self.position + count) as usize > self.bytes.len() * 8 {
            return None;
        }
        let mut value = 0u64;
        for _ in 0..count {
            let byte = self.bytes[(self.position / 8) as usize];
            let bit = (byte >> (7 - self.position % 8)) & 1;
            value = (value << 1) | u64::from(bit);
            self.position += 1;
        }
        Some(value)
    }
}
