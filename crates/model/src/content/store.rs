//! The block store port: where blocks live. Adapters (filesystem, Kubo) implement it in the
//! persistence crate; [`MemoryBlockStore`] lives here for tests and ephemeral use.
//!
//! Stores are keyed by multihash, as Kubo's are: the same bytes under a CIDv0 and a CIDv1 are one
//! block. Stores return bytes as stored; [`super::Blocks`] verifies them before anyone sees them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::stream::BoxStream;

use super::block::{Block, RAW};
use crate::error::Result;

/// Where blocks are kept.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlockStore: Send + Sync {
    /// The stored bytes of a block, unverified (callers go through [`super::Blocks`]).
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>>;

    /// Whether the block is stored.
    async fn has(&self, cid: &Cid) -> Result<bool>;

    /// Starts a batch of writes that becomes visible only when committed.
    async fn begin(&self) -> Result<Box<dyn BlockBatch>>;

    /// Removes a block; true if it was there.
    async fn delete(&self, cid: &Cid) -> Result<bool>;

    /// Every stored block, as CIDv1 raw-codec CIDs over the stored multihashes.
    async fn list(&self) -> Result<Vec<Cid>>;

    /// Keeps one block fetched from elsewhere, as cache: visible at once and whole (never under
    /// its name half-written), but without waiting for the disk, since losing it loses nothing
    /// (it is verified on every read and fetched again when missing).
    async fn keep(&self, block: &Block) -> Result<()> {
        let mut batch = self.begin().await?;
        batch.put(block.clone()).await?;
        batch.commit(&[]).await
    }

    /// Gives back the space of deleted blocks where deleting them did not (a store that packs
    /// blocks together); run after garbage collection and eviction. The default does nothing.
    async fn reclaim_space(&self) -> Result<()> {
        Ok(())
    }

    /// Pins a root in the backend itself, where the backend has its own pins (Kubo). The default
    /// does nothing: pins of the embedded store live in the content repository.
    async fn pin(&self, _root: &Cid) -> Result<()> {
        Ok(())
    }

    /// Unpins a root in the backend itself; see [`BlockStore::pin`].
    async fn unpin(&self, _root: &Cid) -> Result<()> {
        Ok(())
    }
}

/// Writes that are invisible until [`BlockBatch::commit`]; dropping an uncommitted batch discards it.
#[async_trait]
pub trait BlockBatch: Send {
    /// Stages a block (already hashed by the caller).
    async fn put(&mut self, block: Block) -> Result<()>;

    /// Makes every staged block visible, the given roots last, so a root is never visible before
    /// the blocks under it.
    async fn commit(self: Box<Self>, roots: &[Cid]) -> Result<()>;
}

/// The key a store files a block under: its multihash, in a CIDv1 raw wrapper.
pub fn storage_key(cid: &Cid) -> Cid {
    Cid::new_v1(RAW, *cid.hash())
}

/// Blocks in memory; for tests and throwaway nodes.
#[derive(Clone, Default)]
pub struct MemoryBlockStore {
    blocks: Arc<Mutex<HashMap<Cid, Bytes>>>,
}

impl MemoryBlockStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces a stored block's bytes without any check (to test corruption handling).
    pub fn overwrite_unchecked(&self, cid: &Cid, data: Bytes) {
        self.lock().insert(storage_key(cid), data);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Bytes>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl BlockStore for MemoryBlockStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        Ok(self.lock().get(&storage_key(cid)).cloned())
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.lock().contains_key(&storage_key(cid)))
    }

    async fn begin(&self) -> Result<Box<dyn BlockBatch>> {
        Ok(Box::new(MemoryBatch {
            store: self.clone(),
            staged: Vec::new(),
        }))
    }

    async fn delete(&self, cid: &Cid) -> Result<bool> {
        Ok(self.lock().remove(&storage_key(cid)).is_some())
    }

    async fn list(&self) -> Result<Vec<Cid>> {
        Ok(self.lock().keys().copied().collect())
    }
}

struct MemoryBatch {
    store: MemoryBlockStore,
    staged: Vec<Block>,
}

#[async_trait]
impl BlockBatch for MemoryBatch {
    async fn put(&mut self, block: Block) -> Result<()> {
        self.staged.push(block);
        Ok(())
    }

    async fn commit(self: Box<Self>, _roots: &[Cid]) -> Result<()> {
        let mut blocks = self.store.lock();
        for block in self.staged {
            let (cid, data) = block.into_parts();
            blocks.insert(storage_key(&cid), data);
        }
        Ok(())
    }
}

/// A stream of byte chunks, the shape of every input and output of content.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;
