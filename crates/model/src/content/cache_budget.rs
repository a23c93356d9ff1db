//! The budget of blocks kept from upstream gateways: which stored blocks are such a cache, their
//! sizes and their order of last use, so that the least recently used go first when the budget is
//! exceeded. Locally added content is never in it; a remote DAG that gets pinned leaves it.
//!
//! The record of cached blocks is kept by a [`CachedBlocks`] repository (SQLite in the server), so
//! a restart still knows what it may evict; recency within a run is kept in memory only, and a
//! restart orders blocks by when they were fetched.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cid::Cid;
use tokio::sync::Notify;

use super::lock;
use super::store::storage_key;
use crate::clock::now_ms;
use crate::error::Result;

/// Bytes of remote blocks kept by default: 10 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// An eviction goes down to this share of the budget, so that it does not run at every fetch.
const EVICT_TO_PERCENT: u64 = 90;

/// Where the record of cached blocks is kept.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CachedBlocks: Send + Sync {
    /// Every cached block (storage key) and its size, least recently fetched first.
    async fn load(&self) -> Result<Vec<(Cid, u64)>>;

    /// Records a block kept from an upstream.
    async fn record(&self, key: &Cid, size: u64, fetched_at_ms: i64) -> Result<()>;

    /// Forgets blocks (evicted, or now part of pinned content).
    async fn forget(&self, keys: &[Cid]) -> Result<()>;
}

/// Records in memory; for tests and throwaway nodes.
#[derive(Default)]
pub struct MemoryCachedBlocks {
    rows: Mutex<Vec<(Cid, u64, i64)>>,
}

#[async_trait]
impl CachedBlocks for MemoryCachedBlocks {
    async fn load(&self) -> Result<Vec<(Cid, u64)>> {
        let mut rows = lock(&self.rows).clone();
        rows.sort_by_key(|(_, _, at)| *at);
        Ok(rows.into_iter().map(|(key, size, _)| (key, size)).collect())
    }

    async fn record(&self, key: &Cid, size: u64, fetched_at_ms: i64) -> Result<()> {
        let mut rows = lock(&self.rows);
        rows.retain(|(k, _, _)| k != key);
        rows.push((*key, size, fetched_at_ms));
        Ok(())
    }

    async fn forget(&self, keys: &[Cid]) -> Result<()> {
        lock(&self.rows).retain(|(k, _, _)| !keys.contains(k));
        Ok(())
    }
}

#[derive(Default)]
struct Lru {
    /// Key to (size, stamp of last use).
    entries: HashMap<Cid, (u64, u64)>,
    /// Stamp to key, oldest first.
    order: BTreeMap<u64, Cid>,
    bytes: u64,
    next_stamp: u64,
}

impl Lru {
    fn insert(&mut self, key: Cid, size: u64) {
        self.remove(&key);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.insert(key, (size, stamp));
        self.order.insert(stamp, key);
        self.bytes += size;
    }

    fn touch(&mut self, key: &Cid) {
        if let Some((size, _)) = self.entries.get(key).copied() {
            self.insert(*key, size);
        }
    }

    fn remove(&mut self, key: &Cid) -> bool {
        match self.entries.remove(key) {
            Some((size, stamp)) => {
                self.order.remove(&stamp);
                self.bytes -= size;
                true
            }
            None => false,
        }
    }
}

/// What the cache holds against its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    pub blocks: u64,
    pub bytes: u64,
    pub max_bytes: u64,
}

/// What one eviction takes out of the budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Blocks to delete, least recently used first.
    pub evict: Vec<Cid>,
    /// Blocks that are part of pinned content now, kept.
    pub now_pinned: Vec<Cid>,
}

/// The cached blocks in order of use, against a budget of bytes.
pub struct CacheBudget {
    max_bytes: u64,
    lru: Mutex<Lru>,
    index: Arc<dyn CachedBlocks>,
    over: Notify,
}

impl CacheBudget {
    /// The budget, with the blocks `index` records (least recently fetched first).
    pub async fn open(index: Arc<dyn CachedBlocks>, max_bytes: u64) -> Result<Self> {
        let mut lru = Lru::default();
        for (key, size) in index.load().await? {
            lru.insert(key, size);
        }
        let budget = Self {
            max_bytes,
            lru: Mutex::new(lru),
            index,
            over: Notify::new(),
        };
        if budget.is_over() {
            budget.over.notify_one();
        }
        Ok(budget)
    }

    pub fn usage(&self) -> CacheUsage {
        let lru = lock(&self.lru);
        CacheUsage {
            blocks: lru.entries.len() as u64,
            bytes: lru.bytes,
            max_bytes: self.max_bytes,
        }
    }

    /// Records a block about to be kept from an upstream (before it is written: a crash between
    /// the two leaves a record without a block, which eviction passes over, never a block
    /// without a record).
    pub async fn admit(&self, cid: &Cid, size: u64) -> Result<()> {
        let key = storage_key(cid);
        self.index.record(&key, size, now_ms()).await?;
        lock(&self.lru).insert(key, size);
        if self.is_over() {
            self.over.notify_one();
        }
        Ok(())
    }

    /// A cached block was read: it goes to the back of the eviction order.
    pub fn touch(&self, cid: &Cid) {
        lock(&self.lru).touch(&storage_key(cid));
    }

    /// Blocks that are no longer cache (their DAG was pinned): never evicted from now on.
    pub async fn release(&self, keys: &[Cid]) -> Result<()> {
        let released: Vec<Cid> = {
            let mut lru = lock(&self.lru);
            keys.iter().map(storage_key).filter(|key| lru.remove(key)).collect()
        };
        if !released.is_empty() {
            self.index.forget(&released).await?;
        }
        Ok(())
    }

    /// Whether the cached bytes exceed the budget.
    pub fn is_over(&self) -> bool {
        lock(&self.lru).bytes > self.max_bytes
    }

    /// Waits until the budget is exceeded.
    pub async fn wait_until_over(&self) {
        while !self.is_over() {
            self.over.notified().await;
        }
    }

    /// The least recently used blocks to evict to come back under the budget (to 90% of it),
    /// oldest first. Blocks for which `pinned` says true are part of pinned content now (added
    /// or imported here as well): they leave the budget without being evicted. Both are taken out
    /// of the budget; their records go with [`CacheBudget::forget`] once the blocks are deleted.
    pub fn take_eviction(&self, pinned: impl Fn(&Cid) -> bool) -> Eviction {
        let mut lru = lock(&self.lru);
        let target = self.max_bytes / 100 * EVICT_TO_PERCENT;
        let mut eviction = Eviction::default();
        let oldest_first: Vec<Cid> = lru.order.values().copied().collect();
        for key in oldest_first {
            if lru.bytes <= target {
                break;
            }
            if pinned(&key) {
                eviction.now_pinned.push(key);
            } else {
                eviction.evict.push(key);
            }
            lru.remove(&key);
        }
        eviction
    }

    /// Forgets the record of blocks evicted or released.
    pub async fn forget(&self, keys: &[Cid]) -> Result<()> {
        self.index.forget(keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Block;
    use crate::content::block::RAW;

    fn key(n: u8) -> Cid {
        *Block::encode(cid::Version::V1, RAW, vec![n].into()).cid()
    }

    #[tokio::test]
    async fn the_least_recently_used_go_first_down_to_ninety_percent() {
        let index = Arc::new(MemoryCachedBlocks::default());
        let budget = CacheBudget::open(index.clone(), 1000).await.unwrap();
        for n in 0..10 {
            budget.admit(&key(n), 100).await.unwrap();
        }
        assert!(!budget.is_over());
        budget.touch(&key(0)); // used again: now the most recent
        budget.admit(&key(10), 150).await.unwrap();
        assert!(budget.is_over());
        let eviction = budget.take_eviction(|_| false);
        // 1150 bytes down to at most 900: the three least recently used, 1, 2 and 3.
        assert_eq!(eviction.evict, vec![key(1), key(2), key(3)]);
        assert_eq!(budget.usage().bytes, 850);
        budget.forget(&eviction.evict).await.unwrap();
        assert_eq!(index.load().await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn pinned_blocks_leave_the_budget_without_being_evicted() {
        let budget = CacheBudget::open(Arc::new(MemoryCachedBlocks::default()), 300)
            .await
            .unwrap();
        for n in 0..4 {
            budget.admit(&key(n), 100).await.unwrap();
        }
        let eviction = budget.take_eviction(|k| *k == key(0));
        assert_eq!(eviction.now_pinned, vec![key(0)]);
        // 400 bytes down to at most 270: 0 is pinned, 1 goes, then 200 bytes are left.
        assert_eq!(eviction.evict, vec![key(1)]);
        assert_eq!(budget.usage().blocks, 2);
        budget.release(&[key(3)]).await.unwrap();
        assert_eq!(
            budget.usage(),
            CacheUsage {
                blocks: 1,
                bytes: 100,
                max_bytes: 300
            }
        );
    }

    #[tokio::test]
    async fn a_restart_knows_what_it_may_evict_and_in_which_order() {
        let index = Arc::new(MemoryCachedBlocks::default());
        index.record(&key(1), 600, 2).await.unwrap();
        index.record(&key(2), 600, 1).await.unwrap();
        let budget = CacheBudget::open(index, 1000).await.unwrap();
        assert!(budget.is_over());
        tokio::time::timeout(std::time::Duration::from_secs(1), budget.wait_until_over())
            .await
            .expect("over at once");
        // Fetched first, evicted first; one is enough to come under 900 bytes.
        assert_eq!(budget.take_eviction(|_| false).evict, vec![key(2)]);
    }
}
