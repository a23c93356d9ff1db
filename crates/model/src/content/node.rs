//! What a verified block means as UnixFS: a file piece, a directory, a shard, a symlink.

use bytes::Bytes;
use cid::Cid;

use super::block::{Block, DAG_PB, RAW};
use super::dagpb::{DataType, PbLink, PbNode, UnixFsData};
use crate::error::{Error, Result};

/// A child of a file node and the content bytes under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileChild {
    pub cid: Cid,
    pub size: u64,
}

/// A named link of a directory or shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedLink {
    pub name: String,
    pub cid: Cid,
    pub tsize: u64,
}

/// A block read as UnixFS.
#[derive(Clone, Debug)]
pub enum Node {
    /// Content bytes: a raw block, or a file node's own data followed by its children.
    File {
        data: Bytes,
        children: Vec<FileChild>,
        size: u64,
    },
    Directory {
        links: Vec<NamedLink>,
    },
    /// A HAMT shard of a large directory: links are prefixed with the bucket index.
    HamtShard {
        links: Vec<NamedLink>,
        fanout: u64,
    },
    Symlink {
        target: Bytes,
    },
}

/// The kinds of node, as named in stats and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Directory,
    Symlink,
}

impl NodeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Directory => "directory",
            NodeKind::Symlink => "symlink",
        }
    }
}

/// murmur3-x64-64, the only hash Kubo uses for HAMT directories.
pub const HAMT_MURMUR3: u64 = 0x22;

impl Node {
    pub fn parse(block: &Block) -> Result<Self> {
        let cid = block.cid();
        match cid.codec() {
            RAW => Ok(Node::File {
                data: block.data().clone(),
                children: Vec::new(),
                size: block.data().len() as u64,
            }),
            DAG_PB => Self::parse_dag_pb(cid, block.data().clone()),
            codec => Err(Error::UnsupportedCodec { cid: *cid, codec }),
        }
    }

    fn parse_dag_pb(cid: &Cid, bytes: Bytes) -> Result<Self> {
        let node = PbNode::decode_block(cid, bytes)?;
        let unixfs = UnixFsData::decode_from(cid, &node)?;
        let malformed = |reason: String| Error::MalformedBlock { cid: *cid, reason };
        match unixfs.kind() {
            Some(DataType::File | DataType::Raw) => {
                if node.links.len() != unixfs.blocksizes.len() {
                    return Err(malformed(format!(
                        "{} links but {} blocksizes",
                        node.links.len(),
                        unixfs.blocksizes.len()
                    )));
                }
                let data = unixfs.data.clone().unwrap_or_default();
                let children = node
                    .links
                    .iter()
                    .zip(&unixfs.blocksizes)
                    .map(|(link, size)| {
                        Ok(FileChild {
                            cid: link.target(cid)?,
                            size: *size,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let size = data.len() as u64 + unixfs.blocksizes.iter().sum::<u64>();
                Ok(Node::File { data, children, size })
            }
            Some(DataType::Directory) => Ok(Node::Directory {
                links: named_links(cid, &node.links)?,
            }),
            Some(DataType::HamtShard) => {
                let fanout = unixfs.fanout.unwrap_or(0);
                if !fanout.is_power_of_two() || !(2..=4096).contains(&fanout) {
                    return Err(malformed(format!(
                        "HAMT fanout {fanout} is not a power of two up to 4096"
                    )));
                }
                if unixfs.hash_type != Some(HAMT_MURMUR3) {
                    return Err(malformed(format!(
                        "HAMT hash type {:?} is not murmur3-x64-64",
                        unixfs.hash_type
                    )));
                }
                Ok(Node::HamtShard {
                    links: named_links(cid, &node.links)?,
                    fanout,
                })
            }
            Some(DataType::Symlink) => Ok(Node::Symlink {
                target: unixfs.data.unwrap_or_default(),
            }),
            Some(DataType::Metadata) | None => Err(malformed(format!("unsupported UnixFS type {}", unixfs.r#type))),
        }
    }

    pub fn kind(&self) -> NodeKind {
        match self {
            Node::File { .. } => NodeKind::File,
            Node::Directory { .. } | Node::HamtShard { .. } => NodeKind::Directory,
            Node::Symlink { .. } => NodeKind::Symlink,
        }
    }
}

fn named_links(cid: &Cid, links: &[PbLink]) -> Result<Vec<NamedLink>> {
    links
        .iter()
        .map(|link| {
            Ok(NamedLink {
                name: link.name.clone().unwrap_or_default(),
                cid: link.target(cid)?,
                tsize: link.tsize.unwrap_or(0),
            })
        })
        .collect()
}
