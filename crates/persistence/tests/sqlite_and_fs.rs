//! The SQLite repository and the filesystem block store, against real files in a temp dir.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use model::Error;
use model::content::{
    AddRequest, BlockStore, ByteRange, ByteStream, ContentNode, ContentRecord, ContentRepository, ContentService,
    ImportOptions, Page,
};
use model::content::{Block, CachedBlocks};
use persistence::{FsBlockStore, SqlCachedBlocks, SqlContentRepository, database};

fn record(cid: &str, created_at_ms: i64, pinned: bool) -> ContentRecord {
    ContentRecord {
        cid: cid.parse().unwrap(),
        size: 12,
        name: Some("hello.txt".into()),
        content_type: Some("text/plain".into()),
        cid_version: 0,
        blocks: 1,
        created_at_ms,
        pinned,
    }
}

const A: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
const B: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

#[tokio::test]
async fn records_persist_across_reopening_and_keep_pins_and_first_dates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let repo = SqlContentRepository::new(database::open(&path).await.unwrap());
        repo.save(&record(A, 100, true)).await.unwrap();
        repo.save(&record(B, 200, false)).await.unwrap();
        // Adding A again, unpinned and later, neither unpins it nor moves its date.
        let mut again = record(A, 300, false);
        again.name = None;
        repo.save(&again).await.unwrap();
    }
    let repo = SqlContentRepository::new(database::open(&path).await.unwrap());
    let a = repo.get(&A.parse().unwrap()).await.unwrap().unwrap();
    assert!(a.pinned);
    assert_eq!(a.created_at_ms, 100);
    assert_eq!(
        a.name.as_deref(),
        Some("hello.txt"),
        "a missing name does not erase the known one"
    );
    let (page, total) = repo.list(Page { offset: 0, limit: 1 }).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page[0].cid.to_string(), B, "newest first");
    assert_eq!(repo.pinned().await.unwrap(), vec![A.parse().unwrap()]);
    assert!(repo.set_pinned(&B.parse().unwrap(), true).await.unwrap());
    assert_eq!(repo.pinned().await.unwrap().len(), 2);
    assert!(repo.delete(&A.parse().unwrap()).await.unwrap());
    assert!(!repo.delete(&A.parse().unwrap()).await.unwrap());
    assert!(repo.get(&A.parse().unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn the_database_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let pool = database::open(&dir.path().join("db.sqlite")).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

struct Node {
    node: ContentNode,
    store: FsBlockStore,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let repo = SqlContentRepository::new(database::open(&dir.path().join("db.sqlite")).await.unwrap());
    Node {
        node: ContentNode::new(Arc::new(store.clone()), Arc::new(repo)),
        store,
        _dir: dir,
    }
}

fn input(data: &[u8]) -> ByteStream {
    let pieces: Vec<model::Result<Bytes>> = data.chunks(10_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed()
}

async fn read_all(node: &ContentNode, cid: &cid::Cid, range: ByteRange) -> model::Result<Vec<u8>> {
    let parts: Vec<Bytes> = node.read(cid, range).await?.try_collect().await?;
    Ok(parts.concat())
}

/// Whether the staging directory empties (a dropped batch is removed off the async threads, so
/// give it a moment).
async fn staging_empties(dir: &std::path::Path) -> bool {
    for _ in 0..200 {
        if std::fs::read_dir(dir.join("staging")).unwrap().next().is_none() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn files_round_trip_through_the_disk_store() {
    let n = node().await;
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let added = n
        .node
        .add(
            input(&data),
            AddRequest {
                pin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(read_all(&n.node, &added.cid, ByteRange::full()).await.unwrap(), data);
    assert_eq!(
        read_all(&n.node, &added.cid, ByteRange::new(262_000, Some(1000)))
            .await
            .unwrap(),
        data[262_000..263_000]
    );
    assert_eq!(n.store.list().await.unwrap().len() as u64, added.blocks);
    assert!(staging_empties(n._dir.path()).await);
}

#[tokio::test]
async fn an_aborted_upload_leaves_no_block_and_no_staging() {
    let n = node().await;
    let failing = stream::iter(vec![
        Ok(Bytes::from(vec![3u8; 600_000])),
        Err(Error::Input("client went away".into())),
    ]);
    let err = n.node.add(failing.boxed(), AddRequest::default()).await.unwrap_err();
    assert!(matches!(err, Error::Input(_)));
    assert!(n.store.list().await.unwrap().is_empty());
    assert!(staging_empties(n._dir.path()).await);
}

#[tokio::test]
async fn a_block_corrupted_on_disk_is_refused_and_named_by_verify() {
    let n = node().await;
    let options = ImportOptions::new(Some(1), None, Some("size-1024")).unwrap();
    let data = vec![9u8; 3000];
    let added = n
        .node
        .add(
            input(&data),
            AddRequest {
                options,
                pin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let root = n.node.block(&added.cid).await.unwrap();
    let leaf = model::content::dagpb::PbNode::decode_block(root.cid(), root.data().clone())
        .unwrap()
        .links[2]
        .target(&added.cid)
        .unwrap();
    std::fs::write(n.store.path_of(&leaf), b"flipped bits").unwrap();

    let err = read_all(&n.node, &added.cid, ByteRange::new(2500, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch(cid) if cid == leaf));
    let report = n.node.verify_store().await.unwrap();
    assert_eq!(report.checked, 3, "two distinct leaves and the root");
    assert_eq!(report.corrupted.len(), 1);
    assert_eq!(report.corrupted[0].hash(), leaf.hash());
}

#[tokio::test]
async fn gc_frees_removed_content_on_disk() {
    let n = node().await;
    let added = n
        .node
        .add(
            input(&[5u8; 300_000]),
            AddRequest {
                pin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n.node.collect_garbage().await.unwrap().removed.len(), 0);
    n.node.remove(&added.cid).await.unwrap();
    let report = n.node.collect_garbage().await.unwrap();
    assert_eq!(report.removed.len() as u64, added.blocks);
    assert!(n.store.list().await.unwrap().is_empty());
    assert!(matches!(n.node.stat(&added.cid).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn leftover_staging_from_a_crash_is_cleared_on_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("staging/crashed-batch")).unwrap();
    std::fs::write(dir.path().join("staging/crashed-batch/half"), b"partial").unwrap();
    FsBlockStore::open(dir.path()).await.unwrap();
    assert!(staging_empties(dir.path()).await);
}

#[tokio::test]
async fn the_metrics_history_buckets_in_sql_as_in_memory_and_prunes() {
    use model::monitoring::{Anomaly, MemoryMetricsHistory, Metric, MetricsHistory, Sample, SeriesQuery};
    let dir = tempfile::tempdir().unwrap();
    let sql = persistence::SqlMetricsHistory::new(persistence::database::open(&dir.path().join("db")).await.unwrap());
    let memory = MemoryMetricsHistory::default();
    for i in 0..300i64 {
        let sample = Sample {
            at_ms: 1_000_000 + i * 1000,
            values: vec![(Metric::Cpu, (i % 17) as f64), (Metric::Rss, 1e6 + i as f64)],
        };
        sql.store(&sample).await.unwrap();
        memory.store(&sample).await.unwrap();
    }
    for step in [None, Some(1000), Some(7000), Some(60_000)] {
        let query = SeriesQuery::bounded(Metric::Cpu, 1_010_500, 1_250_000, step);
        let (from_sql, from_memory) = (sql.query(query).await.unwrap(), memory.query(query).await.unwrap());
        assert_eq!(from_sql.len(), from_memory.len(), "{step:?}");
        for (a, b) in from_sql.iter().zip(&from_memory) {
            assert_eq!((a.t, a.min, a.max), (b.t, b.min, b.max));
            assert!((a.value - b.value).abs() < 1e-9);
        }
    }
    let anomaly = |at_ms| Anomaly {
        at_ms,
        metric: "cpu_percent".into(),
        value: 99.0,
        expected_low: 0.0,
        expected_high: 10.0,
        score: 1.0,
        detector: "relative_entropy".into(),
    };
    sql.store_anomaly(&anomaly(1_100_000)).await.unwrap();
    sql.store_anomaly(&anomaly(1_200_000)).await.unwrap();
    let newest = sql.anomalies(0, 1).await.unwrap();
    assert_eq!(newest, vec![anomaly(1_200_000)]);
    assert_eq!(sql.prune(1_150_000).await.unwrap(), 2 * 150);
    assert_eq!(sql.anomalies(0, 10).await.unwrap().len(), 1);
    let rest = sql
        .query(SeriesQuery::bounded(Metric::Rss, 0, 2_000_000, Some(1000)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 150);
}

#[tokio::test]
async fn cached_block_records_persist_oldest_first_and_are_forgotten_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let keys: Vec<cid::Cid> = (0..1200u32)
        .map(|n| *Block::encode(cid::Version::V1, 0x55, n.to_be_bytes().to_vec().into()).cid())
        .collect();
    {
        let cached = SqlCachedBlocks::new(database::open(&path).await.unwrap());
        for (n, key) in keys.iter().enumerate() {
            // Recorded newest first: loading orders them by fetch time, not by insertion.
            cached.record(key, n as u64, 10_000 - n as i64).await.unwrap();
        }
        cached.record(&keys[0], 7, 1).await.unwrap(); // fetched again: one row, updated
    }
    let cached = SqlCachedBlocks::new(database::open(&path).await.unwrap());
    let loaded = cached.load().await.unwrap();
    assert_eq!(loaded.len(), 1200);
    assert_eq!(loaded[0], (keys[0], 7));
    assert_eq!(loaded[1], (keys[1199], 1199));
    cached.forget(&keys[..1100]).await.unwrap(); // more than one batch of deletes
    assert_eq!(cached.load().await.unwrap().len(), 100);
}

#[tokio::test]
async fn a_kept_block_is_whole_under_its_name_and_leaves_no_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let block = Block::encode(cid::Version::V1, 0x55, Bytes::from(vec![9u8; 300_000]));
    store.keep(&block).await.unwrap();
    assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    store.keep(&block).await.unwrap(); // again: replaced in place
    assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    assert_eq!(store.list().await.unwrap().len(), 1);
}
