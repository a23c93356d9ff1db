//! Content another node holds, read through upstreams: fetched, verified, kept within the cache
//! budget, and never evicted once pinned.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use model::content::{
    BlockStore, ByteRange, CacheBudget, ContentNode, ContentService, ImportOptions, MemoryBlockStore,
    MemoryCachedBlocks, MemoryContentRepository, Remote, RemoteOptions, Upstream, UpstreamError,
};
use support::{add_request, collect, kubo_bytes, node, pieces};

/// An upstream that serves another node's blocks.
struct NodeUpstream(Arc<ContentNode>);

#[async_trait]
impl Upstream for NodeUpstream {
    fn name(&self) -> &str {
        "origin"
    }

    async fn block(&self, cid: &Cid) -> Result<Bytes, UpstreamError> {
        match self.0.block(cid).await {
            Ok(block) => Ok(block.data().clone()),
            Err(model::Error::NotFound(_)) => Err(UpstreamError::NotFound),
            Err(e) => Err(UpstreamError::Failed(e.to_string())),
        }
    }
}

const KIB: usize = 1024;

/// CIDv1 with raw leaves of 64 KiB: a 1 MiB file is 16 leaves and a root.
fn options() -> ImportOptions {
    ImportOptions::new(Some(1), None, Some("size-65536")).unwrap()
}

async fn origin_with(files: &[Vec<u8>]) -> (Arc<ContentNode>, Vec<Cid>) {
    let (origin, _) = node();
    let mut cids = Vec::new();
    for data in files {
        let record = origin
            .add(pieces(data.clone(), 100_000), add_request(options()))
            .await
            .unwrap();
        cids.push(record.cid);
    }
    (Arc::new(origin), cids)
}

fn edge(origin: &Arc<ContentNode>, budget: Arc<CacheBudget>) -> (ContentNode, MemoryBlockStore) {
    let store = MemoryBlockStore::new();
    let remote = Remote::new(vec![Arc::new(NodeUpstream(origin.clone()))], RemoteOptions::default());
    let node = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()))
        .with_remote(Arc::new(remote))
        .with_cache_budget(budget);
    (node, store)
}

/// Waits for the blocks kept in the background to be recorded.
async fn settle(budget: &CacheBudget, blocks: u64) {
    for _ in 0..200 {
        if budget.usage().blocks >= blocks {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn remote_reads_are_kept_and_the_least_recently_used_are_evicted_over_budget() {
    let data = kubo_bytes("remote", 1024 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    let budget = Arc::new(
        CacheBudget::open(Arc::new(MemoryCachedBlocks::default()), 512 * KIB as u64)
            .await
            .unwrap(),
    );
    let (edge, store) = edge(&origin, budget.clone());

    let read = collect(edge.read(&cids[0], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    assert!(read == data);
    settle(&budget, 17).await;
    assert!(budget.is_over(), "1 MiB kept against a 512 KiB budget");
    let evicted = edge.evict_over_budget().await.unwrap();
    let usage = budget.usage();
    assert!(usage.bytes <= 512 * KIB as u64 * 9 / 10, "{usage:?}");
    assert!(evicted >= 8, "{evicted} evicted");
    assert_eq!(store.list().await.unwrap().len() as u64, 17 - evicted as u64);

    // What was evicted is fetched again when read.
    let again = collect(edge.read(&cids[0], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    assert!(again == data);
}

#[tokio::test]
async fn a_pinned_remote_dag_is_kept_whole_and_never_evicted() {
    let pinned_data = kubo_bytes("pinned", 256 * KIB);
    let cached_data = kubo_bytes("cached", 1024 * KIB);
    let (origin, cids) = origin_with(&[pinned_data.clone(), cached_data]).await;
    let budget = Arc::new(
        CacheBudget::open(Arc::new(MemoryCachedBlocks::default()), 256 * KIB as u64)
            .await
            .unwrap(),
    );
    let (edge, store) = edge(&origin, budget.clone());

    // Read first (so its blocks are cache), then pinned: they leave the budget.
    collect(edge.read(&cids[0], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    settle(&budget, 5).await;
    edge.pin(&cids[0]).await.unwrap();
    assert_eq!(budget.usage().blocks, 0);
    assert_eq!(edge.pins().await.unwrap(), vec![cids[0]]);

    collect(edge.read(&cids[1], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    settle(&budget, 17).await;
    edge.evict_over_budget().await.unwrap();
    // Every block of the pinned file is still in the store: it reads with the origin gone.
    let alone = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()));
    let read = collect(alone.read(&cids[0], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    assert!(read == pinned_data);
}
