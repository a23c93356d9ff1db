//! Content another node holds, read through upstreams: fetched, verified, kept within the cache
//! budget, and never evicted once pinned.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use model::content::{
    BlockStore, ByteRange, ByteStream, CacheBudget, CarScope, ContentNode, ContentService, EntityBytes, ImportOptions,
    MemoryBlockStore, MemoryCachedBlocks, MemoryContentRepository, Remote, RemoteOptions, StoreCounters, Upstream,
    UpstreamError,
};
use support::{add_request, collect, kubo_bytes, node, pieces};

/// An upstream that serves another node's blocks, and CARs of ranges unless `blocks_only`; with
/// `extra_block`, its CARs carry one block nobody asked for after the root.
struct NodeUpstream {
    origin: Arc<ContentNode>,
    blocks_only: bool,
    extra_block: Option<Bytes>,
    block_requests: AtomicUsize,
    car_requests: AtomicUsize,
}

impl NodeUpstream {
    fn new(origin: &Arc<ContentNode>) -> Self {
        Self {
            origin: origin.clone(),
            blocks_only: true,
            extra_block: None,
            block_requests: AtomicUsize::new(0),
            car_requests: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Upstream for NodeUpstream {
    fn name(&self) -> &str {
        "origin"
    }

    async fn car(&self, cid: &Cid, first: u64, last: u64) -> Result<ByteStream, UpstreamError> {
        self.car_requests.fetch_add(1, Ordering::SeqCst);
        if self.blocks_only {
            return Err(UpstreamError::Failed("HTTP 501".into()));
        }
        let bytes = EntityBytes {
            from: first as i64,
            to: Some(last as i64),
        };
        let car = self
            .origin
            .export_car(cid, &[], CarScope::Entity(Some(bytes)))
            .await
            .unwrap();
        let Some(extra) = self.extra_block.clone() else {
            return Ok(car);
        };
        // The header and the root as they come, then a block of another DAG, then the rest.
        let mut parts: Vec<Bytes> = car.try_collect().await.unwrap();
        parts.insert(2, extra);
        Ok(futures::stream::iter(parts.into_iter().map(Ok)).boxed())
    }

    async fn block(&self, cid: &Cid) -> Result<Bytes, UpstreamError> {
        self.block_requests.fetch_add(1, Ordering::SeqCst);
        match self.origin.block(cid).await {
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
    edge_over(Arc::new(NodeUpstream::new(origin)), budget)
}

fn edge_over(upstream: Arc<NodeUpstream>, budget: Arc<CacheBudget>) -> (ContentNode, MemoryBlockStore) {
    let store = MemoryBlockStore::new();
    let remote = Remote::new(vec![upstream as Arc<dyn Upstream>], RemoteOptions::default());
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

/// Waits for `blocks` fetched blocks to be counted (those of a CAR read in the background).
async fn fetched(counters: &StoreCounters, blocks: u64) {
    for _ in 0..200 {
        if counters.remote_blocks.load(Ordering::SeqCst) >= blocks {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn big_budget() -> Arc<CacheBudget> {
    Arc::new(
        CacheBudget::open(Arc::new(MemoryCachedBlocks::default()), 1 << 30)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_remote_range_comes_as_one_car_and_a_blocks_only_upstream_block_by_block() {
    let data = kubo_bytes("car range", 1024 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    // Past the first 512 KiB, which come with the file's root.
    let range = ByteRange::new(600_000, Some(300_000));
    let expected = &data[600_000..900_000];

    let serves_cars = Arc::new(NodeUpstream {
        blocks_only: false,
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(serves_cars.clone(), big_budget().await);
    let read = collect(edge.read(&cids[0], range).await.unwrap()).await.unwrap();
    assert!(read == expected);
    // The root as a CAR with the file's first 512 KiB, then one CAR for the five leaves the range
    // needs (9 to 13 of 0 to 15); no block asked alone.
    assert_eq!(serves_cars.car_requests.load(Ordering::SeqCst), 2);
    assert_eq!(serves_cars.block_requests.load(Ordering::SeqCst), 0);
    // Read again: everything is here, nothing is asked.
    collect(edge.read(&cids[0], range).await.unwrap()).await.unwrap();
    assert_eq!(serves_cars.car_requests.load(Ordering::SeqCst), 2);

    let blocks_only = Arc::new(NodeUpstream::new(&origin));
    let (edge, _) = edge_over(blocks_only.clone(), big_budget().await);
    let read = collect(edge.read(&cids[0], range).await.unwrap()).await.unwrap();
    assert!(read == expected);
    assert_eq!(
        blocks_only.car_requests.load(Ordering::SeqCst),
        1,
        "asked once, then not again"
    );
    assert_eq!(blocks_only.block_requests.load(Ordering::SeqCst), 1 + 5);
    let report = &edge.remote().unwrap().report()[0];
    assert_eq!((report.car_refusals, report.bad_blocks), (1, 0));
}

#[tokio::test]
async fn a_car_with_a_block_the_walk_did_not_ask_for_is_refused_and_the_range_read_block_by_block() {
    let data = kubo_bytes("sneaky", 1024 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    // A well-formed CAR section (length, CID, bytes) of a block of another DAG.
    let stranger = model::content::Block::encode(cid::Version::V1, 0x55, Bytes::from_static(b"unasked"));
    let body = [stranger.cid().to_bytes(), stranger.data().to_vec()].concat();
    let mut section = Vec::new();
    let mut len = body.len();
    while len >= 0x80 {
        section.push((len as u8) | 0x80);
        len >>= 7;
    }
    section.push(len as u8);
    section.extend_from_slice(&body);
    let sneaky = Arc::new(NodeUpstream {
        blocks_only: false,
        extra_block: Some(Bytes::from(section)),
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(sneaky.clone(), big_budget().await);
    let read = collect(edge.read(&cids[0], ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    assert!(
        read == data,
        "the whole file, verified, block by block after the CAR was refused"
    );
    // Caught in the CAR that brought the root, and in the range's if that one was asked before the
    // first was read as far as the stranger.
    let report = &edge.remote().unwrap().report()[0];
    assert!((1..=2).contains(&report.bad_blocks), "{report:?}");
}

#[tokio::test]
async fn a_car_range_brings_the_next_window_too_for_a_reader_that_goes_on() {
    let data = kubo_bytes("windows", 2048 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    let upstream = Arc::new(NodeUpstream {
        blocks_only: false,
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(upstream.clone(), big_budget().await);
    let counters = edge.store_counters();
    // The root comes with the first 512 KiB (leaves 0 to 7 of 64 KiB), kept in the background.
    edge.stat(&cids[0]).await.unwrap();
    fetched(&counters, 9).await;
    assert_eq!(upstream.car_requests.load(Ordering::SeqCst), 1);
    let head = collect(edge.read(&cids[0], ByteRange::new(0, Some(512 * 1024))).await.unwrap())
        .await
        .unwrap();
    assert!(head == data[..512 * KIB]);
    assert_eq!(
        upstream.car_requests.load(Ordering::SeqCst),
        1,
        "the first bytes were here already"
    );

    // A window of 256 KiB (the media sources') brings the next one: leaves 8 to 11, then 12 to 15.
    let window = 256 * KIB as u64;
    let first = collect(
        edge.read(&cids[0], ByteRange::new(2 * window, Some(window)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(first == data[512 * KIB..768 * KIB]);
    fetched(&counters, 17).await;
    let second = collect(
        edge.read(&cids[0], ByteRange::new(3 * window, Some(window)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(second == data[768 * KIB..1024 * KIB]);
    assert_eq!(
        upstream.car_requests.load(Ordering::SeqCst),
        2,
        "the second window was here already"
    );
    assert_eq!(counters.remote_blocks.load(Ordering::SeqCst), 17);

    // A small range brings nothing ahead.
    let at = 1536 * KIB;
    let small = collect(
        edge.read(&cids[0], ByteRange::new(at as u64, Some(1000)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(small == data[at..at + 1000]);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(counters.remote_blocks.load(Ordering::SeqCst), 18, "its one leaf");
}

#[tokio::test]
async fn a_read_of_the_first_bytes_while_they_come_with_the_root_waits_for_them() {
    let data = kubo_bytes("first window", 1024 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    let upstream = Arc::new(NodeUpstream {
        blocks_only: false,
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(upstream.clone(), big_budget().await);
    // A player's first window, asked as soon as the root is here: its leaves are still on their
    // way in the root's CAR.
    let window = collect(edge.read(&cids[0], ByteRange::new(0, Some(256 * 1024))).await.unwrap())
        .await
        .unwrap();
    assert!(window == data[..256 * KIB]);
    assert_eq!(
        upstream.car_requests.load(Ordering::SeqCst),
        1,
        "the first bytes asked once, with the root"
    );
    assert_eq!(edge.store_counters().remote_bytes.load(Ordering::SeqCst), {
        // The root (16 links) and leaves 0 to 7.
        let root = edge.block(&cids[0]).await.unwrap().data().len() as u64;
        root + 512 * KIB as u64
    });
}

#[tokio::test]
async fn a_range_of_a_file_two_levels_deep_comes_as_one_car() {
    // 192 leaves of 64 KiB: more than one node's 174 links, so the root links two inner nodes and
    // they link the leaves.
    let data = kubo_bytes("two levels", 192 * 64 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    let upstream = Arc::new(NodeUpstream {
        blocks_only: false,
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(upstream.clone(), big_budget().await);
    // The root comes with the first inner node and the first 512 KiB, kept in the background.
    edge.stat(&cids[0]).await.unwrap();
    let counters = edge.store_counters();
    fetched(&counters, 1 + 1 + 8).await;
    assert_eq!(upstream.car_requests.load(Ordering::SeqCst), 1);

    // Leaves 80 to 83, under the inner node that is here: not here themselves.
    let at = 80 * 64 * KIB;
    let range = collect(
        edge.read(&cids[0], ByteRange::new(at as u64, Some(256 * 1024)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(range == data[at..at + 256 * KIB]);
    assert_eq!(
        upstream.car_requests.load(Ordering::SeqCst),
        2,
        "one CAR for the range, not one per leaf"
    );
    assert_eq!(upstream.block_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_range_asked_without_read_ahead_brings_only_itself() {
    let data = kubo_bytes("paced", 2048 * KIB);
    let (origin, cids) = origin_with(std::slice::from_ref(&data)).await;
    let upstream = Arc::new(NodeUpstream {
        blocks_only: false,
        ..NodeUpstream::new(&origin)
    });
    let (edge, _) = edge_over(upstream.clone(), big_budget().await);
    let counters = edge.store_counters();
    // The root and the first 512 KiB (leaves 0 to 7).
    edge.stat(&cids[0]).await.unwrap();
    fetched(&counters, 9).await;
    // A media source's window: leaves 8 to 11 and nothing after them.
    let window = 256 * KIB;
    let read = collect(
        edge.read(
            &cids[0],
            ByteRange::new(2 * window as u64, Some(window as u64)).without_read_ahead(),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(read == data[2 * window..3 * window]);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(upstream.car_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        counters.remote_blocks.load(Ordering::SeqCst),
        9 + 4,
        "the window's four leaves"
    );
}
