//! Content addressing the IPFS way: blocks, UnixFS import and reads, directories, CAR.

pub mod block;
pub mod blocks;
pub mod cache_budget;
pub mod car;
pub mod car_feed;
pub mod dagpb;
pub mod directory;
pub mod importer;
pub mod node;
pub mod reader;
pub mod remote;
pub mod repository;
pub mod service;
pub mod store;
pub mod stored_only;

pub use block::{Block, parse_cid};
pub use blocks::{Blocks, StoreCounters};
pub use cache_budget::{CacheBudget, CacheUsage, CachedBlocks, MemoryCachedBlocks};
pub use car::{CarImport, CarScope, EntityBytes};
pub use directory::DirEntry;
pub use importer::{ImportOptions, ImportSummary};
pub use node::NodeKind;
pub use reader::ByteRange;
pub use remote::{Remote, RemoteOptions, Upstream, UpstreamError, UpstreamReport};
pub use repository::{ContentRecord, ContentRepository, MemoryContentRepository, Page};
pub use service::{AddRequest, ContentNode, ContentService, GcReport, NodeStat, VerifyReport};
pub use store::{BlockBatch, BlockStore, ByteStream, MemoryBlockStore};
pub use stored_only::{stored_only, stored_only_stream};

/// A mutex's guard, poisoned or not: what the content core guards stays consistent between
/// statements, so a panic elsewhere leaves nothing half-done to refuse.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
