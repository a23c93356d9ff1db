//! Verified block access: the only read path from a store to the rest of the model.
//!
//! Verified blocks are kept in a small in-memory cache (by total bytes): the root and internal
//! nodes of a file are read again by every range request, and re-hashing them each time would cost
//! more than the read. A cached block was verified when it entered the cache and a CID's bytes never
//! change, so serving it from memory keeps the guarantee.
//!
//! With upstreams configured ([`Remote`]), a block the store lacks (or holds corrupted) is fetched
//! from them, verified there, and written to the store as cache, unpinned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::{Block, DAG_PB, check_supported, verify};
use super::cache_budget::CacheBudget;
use super::lock;
use super::node::Node;
use super::reader::CarWalk;
use super::remote::Remote;
use super::store::{BlockStore, storage_key};
use crate::error::{Error, Result};

const IDENTITY: u64 = 0x00;
/// Bytes of a remote file asked for with its root: a player reads its header and first frames
/// next, and the media sources read in 256 KiB windows.
const FIRST_BYTES: u64 = 512 * 1024;
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
    /// Blocks the store lacked, fetched from upstreams (cache misses of remote content).
    pub remote_blocks: AtomicU64,
    pub remote_bytes: AtomicU64,
    /// Blocks the store lacked that no upstream supplied.
    pub remote_failures: AtomicU64,
    /// Fetched blocks that could not be kept in the store (served all the same).
    pub remote_keep_failures: AtomicU64,
    /// Kept remote blocks deleted to stay within the cache budget.
    pub evicted_blocks: AtomicU64,
}

/// A block store seen through verification: every block returned hashes to its CID.
#[derive(Clone)]
pub struct Blocks {
    store: Arc<dyn BlockStore>,
    cache: Arc<Cache<Cid, Bytes, ByLength>>,
    counters: Arc<StoreCounters>,
    remote: Option<Arc<Remote>>,
    budget: Option<Arc<CacheBudget>>,
    /// The first bytes of remote files still coming in with their roots, by root: a read of
    /// those bytes waits for them rather than asking the upstream for them again.
    first_bytes: Arc<Mutex<HashMap<Cid, Shared<BoxFuture<'static, ()>>>>>,
}

impl Blocks {
    /// Verified reads from `store`, caching up to `cache_bytes` of verified blocks (0: none).
    pub fn new(store: Arc<dyn BlockStore>, cache_bytes: u64) -> Self {
        let estimated_items = (cache_bytes / (64 * 1024)).max(16) as usize;
        Self {
            store,
            cache: Arc::new(Cache::with_weighter(estimated_items, cache_bytes.max(1), ByLength)),
            counters: Arc::default(),
            remote: None,
            budget: None,
            first_bytes: Arc::default(),
        }
    }

    /// Fetched blocks are recorded in `budget`, which decides what is evicted.
    pub fn with_budget(mut self, budget: Arc<CacheBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn budget(&self) -> Option<&Arc<CacheBudget>> {
        self.budget.as_ref()
    }

    /// Blocks the store lacks are fetched from `remote` and kept in the store.
    pub fn with_remote(mut self, remote: Arc<Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The upstreams, unless the work at hand answers from the store alone
    /// ([`super::stored_only`]).
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        self.remote.as_ref().filter(|_| super::stored_only::upstreams_allowed())
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
        if let Some(budget) = &self.budget {
            budget.touch(&key);
        }
        if let Some(data) = self.cache.get(&key) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Block::trusted(*cid, data));
        }
        let block = match (self.read_verified(cid).await, self.remote()) {
            (Ok(block), _) => block,
            (Err(Error::NotFound(_) | Error::HashMismatch(_)), Some(remote)) => self.fetch_remote(remote, cid).await?,
            (Err(e), _) => return Err(e),
        };
        self.cache.insert(key, block.data().clone());
        Ok(block)
    }

    /// The block from an upstream (verified there). A dag-pb block may be a file's root, which is
    /// read next: it is asked as a CAR with the file's first bytes, kept in the background.
    async fn fetch_remote(&self, remote: &Arc<Remote>, cid: &Cid) -> Result<Block> {
        if cid.codec() == DAG_PB
            && let Some(block) = self.fetch_with_first_bytes(remote, cid).await
        {
            return Ok(block);
        }
        let block = self.fetch_counting_failures(remote, cid).await?;
        self.accept_fetched(&block);
        Ok(block)
    }

    /// The block from the upstreams; a failure is counted.
    async fn fetch_counting_failures(&self, remote: &Arc<Remote>, cid: &Cid) -> Result<Block> {
        remote.fetch(cid).await.inspect_err(|_| {
            self.counters.remote_failures.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn count_fetched(&self, block: &Block) {
        self.counters.remote_blocks.fetch_add(1, Ordering::Relaxed);
        self.counters
            .remote_bytes
            .fetch_add(block.data().len() as u64, Ordering::Relaxed);
    }

    /// `cid` from the first CAR-serving upstream, with the first [`FIRST_BYTES`] of the file it
    /// roots when it is one; `None` when no upstream gave it so (the caller asks for the block).
    async fn fetch_with_first_bytes(&self, remote: &Arc<Remote>, cid: &Cid) -> Option<Block> {
        let mut feed = remote.open_car(cid, 0, FIRST_BYTES - 1).await?;
        let root = feed.next_expected(remote, cid).await?;
        self.accept_fetched(&root);
        if let Ok(Node::File { size, .. }) = Node::parse(&root) {
            let walk = CarWalk::new(
                self.clone(),
                remote.clone(),
                feed,
                root.clone(),
                0,
                FIRST_BYTES.min(size),
            );
            let key = storage_key(cid);
            let arriving = walk.drain().shared();
            lock(&self.first_bytes).insert(key, arriving.clone());
            let first_bytes = self.first_bytes.clone();
            tokio::spawn(async move {
                arriving.await;
                lock(&first_bytes).remove(&key);
            });
        }
        Some(root)
    }

    /// Waits for the first bytes of the remote file `root` if they are still coming in with it
    /// ([`FIRST_BYTES`] from its start); returns at once otherwise.
    pub(crate) async fn first_bytes_arrived(&self, root: &Cid, start: u64) {
        if start >= FIRST_BYTES {
            return;
        }
        let arriving = lock(&self.first_bytes).get(&storage_key(root)).cloned();
        if let Some(arriving) = arriving {
            arriving.await;
        }
    }

    /// A block fetched from an upstream and verified: counted, cached in memory, and kept in the
    /// store in the background so the first bytes go out without waiting on the disk.
    pub(crate) fn accept_fetched(&self, block: &Block) {
        self.count_fetched(block);
        self.cache.insert(storage_key(block.cid()), block.data().clone());
        let (store, counters, kept) = (self.store.clone(), self.counters.clone(), block.clone());
        let budget = self.budget.clone();
        tokio::spawn(async move {
            if let Some(budget) = budget
                && let Err(error) = budget.admit(kept.cid(), kept.data().len() as u64).await
            {
                counters.remote_keep_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cid = %kept.cid(), %error, "a fetched block could not be recorded as cache; not kept");
                return;
            }
            if let Err(error) = store.keep(&kept).await {
                counters.remote_keep_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cid = %kept.cid(), %error, "a fetched block could not be kept in the store");
            }
        });
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

    /// Makes sure the store holds the block, fetching it from the upstreams if it lacks it and
    /// waiting until it is kept (for pins of remote content); the block if it was fetched.
    pub async fn keep_locally(&self, cid: &Cid) -> Result<Option<Block>> {
        if self.has(cid).await? {
            return Ok(None);
        }
        let Some(remote) = self.remote() else {
            return Err(Error::NotFound(*cid));
        };
        let block = self.fetch_counting_failures(remote, cid).await?;
        self.count_fetched(&block);
        self.store.keep(&block).await?;
        Ok(Some(block))
    }

    /// Whether a read of the block would be served here, from memory or the store, without asking
    /// an upstream.
    pub async fn at_hand(&self, cid: &Cid) -> Result<bool> {
        if self.cache.peek(&storage_key(cid)).is_some() {
            return Ok(true);
        }
        self.has(cid).await
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
