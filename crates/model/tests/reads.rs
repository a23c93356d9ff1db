//! Range reads: every range equals the same slice of the original, only touched blocks are fetched,
//! and corrupted blocks are refused.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use model::Error;
use model::content::{
    BlockBatch, BlockStore, ByteRange, ContentNode, ContentService, ImportOptions, MemoryBlockStore,
    MemoryContentRepository, NodeKind,
};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use support::{add_request, collect, node, pieces};

/// Counts the blocks read through it.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryBlockStore,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl BlockStore for CountingStore {
    async fn get(&self, cid: &Cid) -> model::Result<Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(cid).await
    }
    async fn has(&self, cid: &Cid) -> model::Result<bool> {
        self.inner.has(cid).await
    }
    async fn begin(&self) -> model::Result<Box<dyn BlockBatch>> {
        self.inner.begin().await
    }
    async fn delete(&self, cid: &Cid) -> model::Result<bool> {
        self.inner.delete(cid).await
    }
    async fn list(&self) -> model::Result<Vec<Cid>> {
        self.inner.list().await
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

#[tokio::test]
async fn random_ranges_equal_slices_of_the_original_in_every_profile() {
    let mut rng = StdRng::seed_from_u64(7);
    let data = random_bytes(&mut rng, 700_000);
    for options in [
        ImportOptions::default(),
        ImportOptions::new(Some(1), None, Some("size-1024")).unwrap(),
        ImportOptions::new(Some(0), Some(true), Some("size-4096")).unwrap(),
    ] {
        let (node, _) = node();
        let added = node
            .add(pieces(data.clone(), 10_000), add_request(options))
            .await
            .unwrap();
        assert_eq!(added.size, data.len() as u64);
        let whole = collect(node.read(&added.cid, ByteRange::full()).await.unwrap())
            .await
            .unwrap();
        assert!(whole == data, "whole file with {options:?}");
        for _ in 0..40 {
            let start = rng.random_range(0..=data.len());
            let len = rng.random_range(0..=data.len() - start);
            let got = collect(
                node.read(&added.cid, ByteRange::new(start as u64, Some(len as u64)))
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
            assert!(got == data[start..start + len], "range {start}+{len} with {options:?}");
        }
        // A length past the end is cut to the end; a start at the end is empty.
        let tail = collect(node.read(&added.cid, ByteRange::new(699_990, Some(100))).await.unwrap())
            .await
            .unwrap();
        assert_eq!(tail, data[699_990..]);
        let empty = collect(node.read(&added.cid, ByteRange::new(700_000, None)).await.unwrap())
            .await
            .unwrap();
        assert!(empty.is_empty());
    }
}

#[tokio::test]
async fn a_range_fetches_only_the_blocks_it_touches() {
    let store = CountingStore::default();
    let node = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()));
    let data = vec![7u8; 2048 * 1024];
    let options = ImportOptions::new(Some(1), None, Some("size-1024")).unwrap();
    let added = node.add(pieces(data, 65_536), add_request(options)).await.unwrap();
    // 2048 leaves under 12 level-1 nodes under one root: a 10-byte read in one leaf needs root,
    // one level-1 node and one leaf.
    store.gets.store(0, Ordering::SeqCst);
    let got = collect(
        node.read(&added.cid, ByteRange::new(1_000_000, Some(10)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, vec![7u8; 10]);
    assert_eq!(store.gets.load(Ordering::SeqCst), 3);
    // The same range again comes from the cache of verified blocks.
    let again = collect(
        node.read(&added.cid, ByteRange::new(1_000_000, Some(10)))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(again, vec![7u8; 10]);
    assert_eq!(store.gets.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_a_cache_every_read_goes_to_the_store() {
    let store = CountingStore::default();
    let node = ContentNode::with_cache(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()), 0);
    let added = node
        .add(
            pieces(b"hello world\n".to_vec(), 4),
            add_request(ImportOptions::default()),
        )
        .await
        .unwrap();
    for expected in [1, 2] {
        collect(node.read(&added.cid, ByteRange::full()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(store.gets.load(Ordering::SeqCst), expected);
    }
}

#[tokio::test]
async fn a_range_past_the_end_is_not_satisfiable() {
    let (node, _) = node();
    let added = node
        .add(pieces(b"0123456789".to_vec(), 3), add_request(ImportOptions::default()))
        .await
        .unwrap();
    match node.read(&added.cid, ByteRange::new(11, None)).await {
        Err(Error::RangeNotSatisfiable {
            start: 11, size: 10, ..
        }) => {}
        Err(other) => panic!("expected RangeNotSatisfiable, got {other}"),
        Ok(_) => panic!("expected RangeNotSatisfiable, got a stream"),
    }
}

#[tokio::test]
async fn a_corrupted_block_is_refused_and_its_bytes_never_served() {
    let (node, store) = node();
    let options = ImportOptions::new(Some(1), None, Some("size-1024")).unwrap();
    let data: Vec<u8> = (0..10_240u32).map(|i| (i % 251) as u8).collect();
    let added = node
        .add(pieces(data.clone(), 1024), add_request(options))
        .await
        .unwrap();

    // Find the leaf holding bytes 5120..6144 and corrupt it.
    let root = node.block(&added.cid).await.unwrap();
    let links = model::content::dagpb::PbNode::decode_block(root.cid(), root.data().clone())
        .unwrap()
        .links;
    let leaf = links[5].target(&added.cid).unwrap();
    store.overwrite_unchecked(&leaf, Bytes::from(vec![0u8; 1024]));

    let mut stream = node.read(&added.cid, ByteRange::full()).await.unwrap();
    let mut served = Vec::new();
    let err = loop {
        use futures::StreamExt;
        match stream.next().await {
            Some(Ok(bytes)) => served.extend_from_slice(&bytes),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without refusing the corrupted block"),
        }
    };
    assert!(matches!(err, Error::HashMismatch(cid) if cid == leaf), "got {err}");
    assert_eq!(
        served,
        data[..5120],
        "only the blocks before the corrupted one were served"
    );

    let report = node.verify_store().await.unwrap();
    assert_eq!(report.corrupted.len(), 1);
    assert_eq!(report.corrupted[0].hash(), leaf.hash());
}

#[tokio::test]
async fn stat_reports_kind_size_and_links() {
    let (node, _) = node();
    let options = ImportOptions::new(Some(0), None, Some("size-1024")).unwrap();
    let added = node
        .add(pieces(vec![1u8; 5000], 5000), add_request(options))
        .await
        .unwrap();
    let stat = node.stat(&added.cid).await.unwrap();
    assert_eq!(stat.kind, NodeKind::File);
    assert_eq!(stat.size, 5000);
    assert_eq!(stat.links, 5);
    assert!(stat.dag_size > 5000);
    assert_eq!(added.blocks, 6);
    let unknown = Cid::try_from("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").unwrap();
    assert!(matches!(node.stat(&unknown).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn an_upload_over_the_limit_stores_nothing() {
    let (node, store) = node();
    let mut request = add_request(ImportOptions::default());
    request.limit = Some(1000);
    let err = node.add(pieces(vec![1u8; 5000], 100), request).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1000 }));
    assert!(store.list().await.unwrap().is_empty());
    assert!(
        node.records(model::content::Page { offset: 0, limit: 10 })
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_input_stores_nothing() {
    let (node, store) = node();
    let input = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 300_000])),
        Err(Error::Input("connection reset".into())),
    ]);
    let err = node
        .add(Box::pin(input), add_request(ImportOptions::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Input(_)));
    assert!(store.list().await.unwrap().is_empty());
}
