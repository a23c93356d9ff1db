//! Verified block access: the only read path from a store to the rest of the model.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

use super::block::{Block, check_supported};
use super::store::BlockStore;
use crate::error::{Error, Result};

const IDENTITY: u64 = 0x00;

/// A block store seen through verification: every block returned hashes to its CID.
#[derive(Clone)]
pub struct Blocks {
    store: Arc<dyn BlockStore>,
}

impl Blocks {
    pub fn new(store: Arc<dyn BlockStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn BlockStore> {
        &self.store
    }

    /// The block, checked against its CID; `NotFound` if absent, `HashMismatch` if corrupted.
    pub async fn get(&self, cid: &Cid) -> Result<Block> {
        check_supported(cid)?;
        if cid.hash().code() == IDENTITY {
            let inline = Bytes::copy_from_slice(cid.hash().digest());
            return Block::verified(*cid, inline);
        }
        let data = self.store.get(cid).await?.ok_or(Error::NotFound(*cid))?;
        match Block::verified(*cid, data) {
            Err(Error::HashMismatch(cid)) => {
                tracing::error!(%cid, "stored block does not match its CID; refusing to serve it");
                Err(Error::HashMismatch(cid))
            }
            other => other,
        }
    }

    /// Whether the block is available (identity CIDs always are).
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        if cid.hash().code() == IDENTITY {
            return Ok(true);
        }
        self.store.has(cid).await
    }
}
