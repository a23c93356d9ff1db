//! Verified block access: the only read path from a store to the rest of the model.
//!
//! Verified blocks are kept in a small in-memory cache (by total bytes): the root and internal
//! nodes of a file are read again by every range request, and re-hashing them each time would cost
//! more than the read. A cached block was verified when it entered the cache and a CID's bytes never
//! change, so serving it from memory keeps the guarantee.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cid::Cid;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::{Block, check_supported, verify};
use super::store::{BlockStore, storage_key};
use crate::error::{Error, Result};

const IDENTITY: u64 = 0x00;
/// Blocks at least this large are hashed on a blocking thread, so the read-ahead of a range read
/// hashes several blocks at once on several cores.
const HASH_OFF_THREAD: usize = 32 * 1024;
/// Bytes of verified blocks kept in memory by default.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Clone)]
struct ByLength;

impl Weighter<Cid, Bytes> for ByLength {
    fn weight(&self, _: &Cid, data: &Bytes) -> u64 {
        data.len() as u64 + 1
    }
}

/// What the store served, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Blocks read from the store (cache misses and verification passes).
    pub blocks_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Blocks served from the cache of verified blocks.
    pub cache_hits: AtomicU64,
    /// Stored blocks whose bytes did not hash to their CID.
    pub verify_failures: AtomicU64,
}

/// A block store seen through verification: every block returned hashes to its CID.
#[derive(Clone)]
pub struct Blocks {
    store: Arc<dyn BlockStore>,
    cache: Arc<Cache<Cid, Bytes, ByLength>>,
    counters: Arc<StoreCounters>,
}

impl Blocks {
    /// Verified reads from `store`, caching up to `cache_bytes` of verified blocks (0: none).
    pub fn new(store: Arc<dyn BlockStore>, cache_bytes: u64) -> Self {
        let estimated_items = (cache_bytes / (64 * 1024)).max(16) as usize;
        Self {
            store,
            cache: Arc::new(Cache::with_weighter(estimated_items, cache_bytes.max(1), ByLength)),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> &Arc<StoreCounters> {
        &self.counters
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
        // Keyed by multihash, as the stores are: one entry for the same bytes under any CID.
        let key = storage_key(cid);
        if let Some(data) = self.cache.get(&key) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Block::trusted(*cid, data));
        }
        let block = self.read_verified(cid).await?;
        self.cache.insert(key, block.data().clone());
        Ok(block)
    }

    /// Reads and rehashes the stored copy, bypassing the cache (for verification passes).
    pub async fn read_verified(&self, cid: &Cid) -> Result<Block> {
        check_supported(cid)?;
        let data = self.store.get(cid).await?.ok_or(Error::NotFound(*cid))?;
        self.counters.blocks_read.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_read.fetch_add(data.len() as u64, Ordering::Relaxed);
        let checked = if data.len() >= HASH_OFF_THREAD {
            let (cid, data) = (*cid, data.clone());
            tokio::task::spawn_blocking(move || verify(&cid, &data))
                .await
                .map_err(|e| Error::task("hashing", e))?
        } else {
            verify(cid, &data)
        };
        match checked {
            Ok(()) => Ok(Block::trusted(*cid, data)),
            Err(Error::HashMismatch(cid)) => {
                self.counters.verify_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%cid, "stored block does not match its CID; refusing to serve it");
                Err(Error::HashMismatch(cid))
            }
            Err(other) => Err(other),
        }
    }

    /// Whether the block is available (identity CIDs always are).
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        if cid.hash().code() == IDENTITY {
            return Ok(true);
        }
        self.store.has(cid).await
    }

    /// Forgets a block from the cache (after it was deleted from the store).
    pub fn forget(&self, cid: &Cid) {
        self.cache.remove(&storage_key(cid));
    }
}
