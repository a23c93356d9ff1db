//! The content repository port: what the server knows about content it was given (name, size,
//! pins). The SQLite adapter lives in the persistence crate; [`MemoryContentRepository`] here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cid::Cid;

use crate::error::Result;

/// A root the server was given, by upload or CAR import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentRecord {
    pub cid: Cid,
    /// Content bytes (file size; 0 for directories).
    pub size: u64,
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub cid_version: u8,
    /// Blocks in the DAG, where known.
    pub blocks: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub pinned: bool,
}

/// A page of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

/// Records of content, newest first in listings.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContentRepository: Send + Sync {
    /// Inserts or updates the record for `record.cid`. An existing pin is kept (adding content again
    /// unpinned does not unpin it) and so is the first `created_at_ms`.
    async fn save(&self, record: &ContentRecord) -> Result<()>;

    async fn get(&self, cid: &Cid) -> Result<Option<ContentRecord>>;

    /// A page of records, newest first, and the total count.
    async fn list(&self, page: Page) -> Result<(Vec<ContentRecord>, u64)>;

    /// Sets the pin flag; false when there is no record.
    async fn set_pinned(&self, cid: &Cid, pinned: bool) -> Result<bool>;

    /// Every pinned root.
    async fn pinned(&self) -> Result<Vec<Cid>>;

    /// Forgets a record; false when there was none.
    async fn delete(&self, cid: &Cid) -> Result<bool>;
}

/// Records in memory; for tests.
#[derive(Clone, Default)]
pub struct MemoryContentRepository {
    records: Arc<Mutex<BTreeMap<String, ContentRecord>>>,
}

impl MemoryContentRepository {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ContentRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ContentRepository for MemoryContentRepository {
    async fn save(&self, record: &ContentRecord) -> Result<()> {
        let mut records = self.lock();
        let mut record = record.clone();
        if let Some(old) = records.get(&record.cid.to_string()) {
            record.pinned |= old.pinned;
            record.created_at_ms = old.created_at_ms;
        }
        records.insert(record.cid.to_string(), record);
        Ok(())
    }

    async fn get(&self, cid: &Cid) -> Result<Option<ContentRecord>> {
        Ok(self.lock().get(&cid.to_string()).cloned())
    }

    async fn list(&self, page: Page) -> Result<(Vec<ContentRecord>, u64)> {
        let records = self.lock();
        let mut all: Vec<_> = records.values().cloned().collect();
        all.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then(a.cid.to_string().cmp(&b.cid.to_string()))
        });
        let total = all.len() as u64;
        let page = all
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect();
        Ok((page, total))
    }

    async fn set_pinned(&self, cid: &Cid, pinned: bool) -> Result<bool> {
        Ok(self
            .lock()
            .get_mut(&cid.to_string())
            .map(|r| r.pinned = pinned)
            .is_some())
    }

    async fn pinned(&self) -> Result<Vec<Cid>> {
        Ok(self.lock().values().filter(|r| r.pinned).map(|r| r.cid).collect())
    }

    async fn delete(&self, cid: &Cid) -> Result<bool> {
        Ok(self.lock().remove(&cid.to_string()).is_some())
    }
}
