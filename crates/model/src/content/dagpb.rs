//! dag-pb nodes and the UnixFS `Data` message they carry, encoded byte for byte as Kubo does.
//!
//! prost writes fields in tag order, but dag-pb's canonical form puts `Links` (tag 2) before `Data`
//! (tag 1), so [`PbNode::encode`] writes the node by hand from prost's field encoders.

use bytes::Bytes;
use cid::Cid;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::error::{Error, Result};

/// One link of a dag-pb node.
#[derive(Clone, PartialEq, Message)]
pub struct PbLink {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hash: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub tsize: Option<u64>,
}

/// A dag-pb node: links, then opaque data (a UnixFS message for UnixFS DAGs).
#[derive(Clone, PartialEq, Message)]
pub struct PbNode {
    #[prost(message, repeated, tag = "2")]
    pub links: Vec<PbLink>,
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub data: Option<Bytes>,
}

/// The UnixFS node kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

/// Seconds and nanoseconds of a UnixFS mtime (read, never written).
#[derive(Clone, PartialEq, Message)]
pub struct UnixTime {
    #[prost(int64, optional, tag = "1")]
    pub seconds: Option<i64>,
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

/// The UnixFS `Data` message (proto2: `blocksizes` is not packed).
#[derive(Clone, PartialEq, Message)]
pub struct UnixFsData {
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

impl PbNode {
    /// Canonical dag-pb bytes: every link, then the data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() + 16);
        encode_links(&self.links, &mut out);
        if let Some(data) = &self.data {
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(data.len() as u64, &mut out);
            out.extend_from_slice(data);
        }
        out
    }

    /// Decodes a dag-pb block (sharing its buffer), naming the block on failure.
    pub fn decode_block(cid: &Cid, bytes: Bytes) -> Result<Self> {
        PbNode::decode(bytes).map_err(|e| Error::MalformedBlock {
            cid: *cid,
            reason: format!("not dag-pb: {e}"),
        })
    }
}

fn encode_links(links: &[PbLink], out: &mut Vec<u8>) {
    for link in links {
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(link.encoded_len() as u64, out);
        link.encode_raw(out);
    }
}

impl PbLink {
    /// A link with an empty name, as file chunks are linked.
    pub fn unnamed(cid: &Cid, tsize: u64) -> Self {
        Self::named(cid, String::new(), tsize)
    }

    pub fn named(cid: &Cid, name: String, tsize: u64) -> Self {
        Self {
            hash: Some(cid.to_bytes()),
            name: Some(name),
            tsize: Some(tsize),
        }
    }

    /// The link's target, naming the parent block on failure.
    pub fn target(&self, parent: &Cid) -> Result<Cid> {
        let bytes = self.hash.as_deref().ok_or_else(|| Error::MalformedBlock {
            cid: *parent,
            reason: "link without a hash".into(),
        })?;
        Cid::try_from(bytes).map_err(|e| Error::MalformedBlock {
            cid: *parent,
            reason: format!("link with an invalid CID: {e}"),
        })
    }
}

impl UnixFsData {
    /// A file leaf holding `data` (Kubo's leaves in the default profile).
    pub fn file_leaf(data: Bytes) -> Self {
        let filesize = data.len() as u64;
        Self {
            r#type: DataType::File as i32,
            data: (!data.is_empty()).then_some(data),
            filesize: Some(filesize),
            ..Default::default()
        }
    }

    /// An internal file node over children of the given content sizes.
    pub fn file_node(blocksizes: Vec<u64>) -> Self {
        Self {
            r#type: DataType::File as i32,
            filesize: Some(blocksizes.iter().sum()),
            blocksizes,
            ..Default::default()
        }
    }

    pub fn kind(&self) -> Option<DataType> {
        DataType::try_from(self.r#type).ok()
    }

    /// Decodes the UnixFS message inside a dag-pb node's data.
    pub fn decode_from(cid: &Cid, node: &PbNode) -> Result<Self> {
        let bytes = node.data.clone().ok_or_else(|| Error::MalformedBlock {
            cid: *cid,
            reason: "dag-pb node without UnixFS data".into(),
        })?;
        UnixFsData::decode(bytes).map_err(|e| Error::MalformedBlock {
            cid: *cid,
            reason: format!("invalid UnixFS data: {e}"),
        })
    }
}

/// Builds a dag-pb block holding one UnixFS message, encoding the message in place (one copy of a
/// leaf's bytes, not two).
pub fn unixfs_block(links: &[PbLink], data: &UnixFsData) -> Bytes {
    let data_len = data.encoded_len();
    let links_len: usize = links.iter().map(|l| l.encoded_len() + 12).sum();
    let mut out = Vec::with_capacity(links_len + data_len + 12);
    encode_links(links, &mut out);
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(data_len as u64, &mut out);
    data.encode_raw(&mut out);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unixfs_block_equals_the_general_encoder() {
        let cid = Cid::try_from("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap();
        let links = vec![PbLink::unnamed(&cid, 20), PbLink::unnamed(&cid, 7)];
        let data = UnixFsData::file_node(vec![12, 3]);
        let general = PbNode {
            links: links.clone(),
            data: Some(data.encode_to_vec().into()),
        }
        .encode();
        assert_eq!(unixfs_block(&links, &data).as_ref(), general.as_slice());
    }

    #[test]
    fn links_are_written_before_data_and_round_trip() {
        let cid = Cid::try_from("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap();
        let node = PbNode {
            links: vec![PbLink::unnamed(&cid, 20)],
            data: Some(UnixFsData::file_node(vec![12]).encode_to_vec().into()),
        };
        let bytes = node.encode();
        assert_eq!(bytes[0], 0x12, "first field is a link (tag 2)");
        let decoded = PbNode::decode(Bytes::from(bytes)).unwrap();
        assert_eq!(decoded, node);
        let data = UnixFsData::decode_from(&cid, &decoded).unwrap();
        assert_eq!(data.blocksizes, vec![12]);
        assert_eq!(data.filesize, Some(12));
    }

    #[test]
    fn blocksizes_are_not_packed() {
        let bytes = UnixFsData::file_node(vec![1, 2]).encode_to_vec();
        // Type=2, filesize=3, then two separate tag-4 varints.
        assert_eq!(bytes, vec![0x08, 0x02, 0x18, 0x03, 0x20, 0x01, 0x20, 0x02]);
    }

    #[test]
    fn garbage_is_a_malformed_block() {
        let cid = Cid::try_from("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap();
        let err = PbNode::decode_block(&cid, Bytes::from_static(&[0xff, 0xff, 0xff])).unwrap_err();
        assert!(matches!(err, Error::MalformedBlock { .. }));
    }
}
