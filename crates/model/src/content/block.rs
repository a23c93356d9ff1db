//! Blocks: bytes addressed by a CID, and the checks every block passes before it is used.

use bytes::Bytes;
use cid::{Cid, Version};
use multihash_codetable::{Code, MultihashDigest};

use crate::error::{Error, Result};

/// Multicodec of dag-pb (UnixFS nodes).
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks (raw leaves).
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256, the hash of every block this server writes.
pub const SHA2_256: u64 = 0x12;
const SHA2_512: u64 = 0x13;
const BLAKE3: u64 = 0x1e;
const IDENTITY: u64 = 0x00;

/// A block whose bytes have been checked against its CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Checks `data` against `cid` and wraps both; fails on any mismatch.
    pub fn verified(cid: Cid, data: Bytes) -> Result<Self> {
        verify(&cid, &data)?;
        Ok(Self { cid, data })
    }

    /// Wraps bytes already verified against `cid` (by [`super::Blocks`]).
    pub(crate) fn trusted(cid: Cid, data: Bytes) -> Self {
        Self { cid, data }
    }

    /// Hashes `data` with sha2-256 and addresses it with the given CID version and codec.
    pub fn encode(version: Version, codec: u64, data: Bytes) -> Self {
        let cid = match version {
            Version::V0 => Cid::new_v0(Code::Sha2_256.digest(&data)).expect("a sha2-256 multihash is a valid CIDv0"),
            Version::V1 => Cid::new_v1(codec, Code::Sha2_256.digest(&data)),
        };
        Self { cid, data }
    }

    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

/// Parses a CID string (CIDv0 base58 or CIDv1 multibase) and rejects codecs and hashes we cannot serve.
pub fn parse_cid(input: &str) -> Result<Cid> {
    let cid = Cid::try_from(input).map_err(|e| Error::InvalidCid {
        input: input.to_owned(),
        reason: e.to_string(),
    })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Rejects CIDs whose codec or multihash this server does not understand.
pub fn check_supported(cid: &Cid) -> Result<()> {
    if cid.codec() != DAG_PB && cid.codec() != RAW {
        return Err(Error::UnsupportedCodec {
            cid: *cid,
            codec: cid.codec(),
        });
    }
    match cid.hash().code() {
        SHA2_256 | SHA2_512 | BLAKE3 | IDENTITY => Ok(()),
        code => Err(Error::UnsupportedHash { cid: *cid, code }),
    }
}

/// Checks that `data` hashes to the multihash in `cid`.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<()> {
    let expected = cid.hash();
    let matches = match expected.code() {
        IDENTITY => expected.digest() == data,
        code => {
            let hasher = Code::try_from(code).map_err(|_| Error::UnsupportedHash { cid: *cid, code })?;
            if !matches!(code, SHA2_256 | SHA2_512 | BLAKE3) {
                return Err(Error::UnsupportedHash { cid: *cid, code });
            }
            let actual = hasher.digest(data);
            actual.digest() == expected.digest()
        }
    };
    if matches {
        Ok(())
    } else {
        Err(Error::HashMismatch(*cid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_blocks_verify_and_tampered_ones_do_not() {
        let block = Block::encode(Version::V1, RAW, Bytes::from_static(b"hello world"));
        assert_eq!(
            block.cid().to_string(),
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        assert!(Block::verified(*block.cid(), block.data().clone()).is_ok());
        let err = Block::verified(*block.cid(), Bytes::from_static(b"hello worle")).unwrap_err();
        assert!(matches!(err, Error::HashMismatch(_)));
    }

    #[test]
    fn parse_cid_names_bad_input() {
        assert!(matches!(parse_cid("not-a-cid"), Err(Error::InvalidCid { .. })));
        assert!(matches!(parse_cid(""), Err(Error::InvalidCid { .. })));
        // dag-cbor codec
        let cbor = "bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje";
        assert!(matches!(parse_cid(cbor), Err(Error::UnsupportedCodec { .. })));
        // raw codec with a murmur3 multihash (0x22): not a hash we verify
        let murmur = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(0x22, &[1; 8]).unwrap());
        assert!(matches!(
            parse_cid(&murmur.to_string()),
            Err(Error::UnsupportedHash { code: 0x22, .. })
        ));
        assert!(parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").is_ok());
    }

    #[test]
    fn identity_cids_verify_by_comparison() {
        let cid = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(IDENTITY, b"abc").unwrap());
        assert!(verify(&cid, b"abc").is_ok());
        assert!(verify(&cid, b"abd").is_err());
    }
}
