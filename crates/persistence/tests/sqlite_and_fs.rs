//! The filesystem block store under a content node, and what is particular to SQLite, against real
//! files in a temp dir (the repositories' contract on both databases is in `repositories.rs`).

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use model::Error;
use model::content::Block;
use model::content::{AddRequest, BlockStore, ByteRange, ByteStream, ContentNode, ContentService, ImportOptions};
use persistence::{FsBlockStore, SqlContentRepository, database};

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
    // No settle time: these tests run one process, and check what reclaiming space leaves.
    let store = FsBlockStore::open_with_settle_time(dir.path(), Duration::ZERO)
        .await
        .unwrap();
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
    let at = n.store.location_of(&leaf).await.unwrap().unwrap();
    let pack = std::fs::OpenOptions::new().write(true).open(&at.path).unwrap();
    pack.write_all_at(b"flipped bits", at.offset).unwrap();

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
    assert_eq!(
        packs(n._dir.path()).len(),
        0,
        "the pack nothing pointed into was removed"
    );
}

/// The pack files under `blocks/`, with their sizes.
fn packs(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut packs: Vec<_> = std::fs::read_dir(dir.join("blocks"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            let size = std::fs::metadata(&path).unwrap().len();
            (path, size)
        })
        .collect();
    packs.sort();
    packs
}

fn blocks_of(sizes: &[usize]) -> Vec<Block> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| Block::encode(cid::Version::V1, 0x55, Bytes::from(vec![i as u8 + 1; size])))
        .collect()
}

async fn stored_in_one_batch(store: &FsBlockStore, blocks: &[Block]) {
    let mut batch = store.begin().await.unwrap();
    for block in blocks {
        batch.put(block.clone()).await.unwrap();
    }
    batch.commit(&[]).await.unwrap();
}

#[tokio::test]
async fn a_batch_is_one_pack_and_a_mostly_dead_pack_is_rewritten_with_what_it_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open_with_settle_time(dir.path(), Duration::ZERO)
        .await
        .unwrap();
    let blocks = blocks_of(&[100_000, 100_000, 100_000, 50_000]);
    stored_in_one_batch(&store, &blocks).await;
    let before = packs(dir.path());
    assert_eq!(before.len(), 1, "{before:?}");

    // Three quarters deleted: the rest moves to a pack of its own, and the old pack goes.
    for block in &blocks[..3] {
        assert!(store.delete(block.cid()).await.unwrap());
    }
    assert!(!store.delete(blocks[0].cid()).await.unwrap(), "already gone");
    store.reclaim_space().await.unwrap();
    let after = packs(dir.path());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].0, before[0].0);
    assert!(after[0].1 < 60_000, "{after:?}");
    assert_eq!(
        store.get(blocks[3].cid()).await.unwrap(),
        Some(blocks[3].data().clone())
    );
    assert_eq!(store.get(blocks[0].cid()).await.unwrap(), None);

    // A pack still mostly alive is left as it is.
    store.reclaim_space().await.unwrap();
    assert_eq!(packs(dir.path()), after);
}

#[tokio::test]
async fn packs_written_within_the_settle_time_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let blocks = blocks_of(&[10_000]);
    stored_in_one_batch(&store, &blocks).await;
    assert!(store.delete(blocks[0].cid()).await.unwrap());
    // As if another process had just renamed a pack into place and not indexed it yet.
    std::fs::write(dir.path().join("blocks/other.pack"), b"not indexed yet").unwrap();
    store.reclaim_space().await.unwrap();
    assert_eq!(packs(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_pack_nothing_indexes_is_removed_once_settled() {
    let dir = tempfile::tempdir().unwrap();
    // What a crash between renaming a pack into place and indexing it leaves.
    std::fs::create_dir_all(dir.path().join("blocks")).unwrap();
    std::fs::write(dir.path().join("blocks/crashed.pack"), b"never indexed").unwrap();
    let store = FsBlockStore::open_with_settle_time(dir.path(), Duration::ZERO)
        .await
        .unwrap();
    store.reclaim_space().await.unwrap();
    assert!(packs(dir.path()).is_empty());
}

#[tokio::test]
async fn block_files_of_the_one_file_per_block_layout_are_moved_into_packs_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = blocks_of(&[1000, 2000]);
    for block in &blocks {
        let key = model::content::store::storage_key(block.cid()).to_string();
        let shard = dir.path().join("blocks").join(&key[key.len() - 3..key.len() - 1]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&key), block.data()).unwrap();
    }
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    for block in &blocks {
        assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    }
    let left = packs(dir.path());
    assert_eq!(left.len(), 1, "the shard directories went, one pack came: {left:?}");
    assert!(left[0].0.extension().is_some_and(|e| e == "pack"));
    drop(store);
    let reopened = FsBlockStore::open(dir.path()).await.unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 2);
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
async fn kept_blocks_share_a_pack_and_leave_no_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let block = Block::encode(cid::Version::V1, 0x55, Bytes::from(vec![9u8; 300_000]));
    store.keep(&block).await.unwrap();
    assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    store.keep(&block).await.unwrap(); // again: the index points at the newer copy
    assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    assert_eq!(store.list().await.unwrap().len(), 1);
    for other in blocks_of(&[1000, 2000, 3000]) {
        store.keep(&other).await.unwrap();
        assert_eq!(store.get(other.cid()).await.unwrap(), Some(other.data().clone()));
    }
    assert_eq!(packs(dir.path()).len(), 1, "kept blocks share a pack");
}

#[tokio::test]
async fn opening_a_store_another_process_has_open_leaves_its_batches_alone() {
    let dir = tempfile::tempdir().unwrap();
    let serving = FsBlockStore::open(dir.path()).await.unwrap();
    let block = Block::encode(cid::Version::V1, 0x55, Bytes::from_static(b"being written"));
    let mut batch = serving.begin().await.unwrap();
    batch.put(block.clone()).await.unwrap();
    // A command run beside the server (`ipfs-stream add`, `token create`) opens the same store.
    let beside = FsBlockStore::open(dir.path()).await.unwrap();
    drop(beside);
    batch.commit(&[*block.cid()]).await.unwrap();
    assert_eq!(serving.get(block.cid()).await.unwrap().as_ref(), Some(block.data()));
    // What a store left in staging is cleared once no other has it open.
    std::fs::write(dir.path().join("staging").join("left-by-a-crash.pack"), b"x").unwrap();
    drop(serving);
    let _reopened = FsBlockStore::open(dir.path()).await.unwrap();
    assert!(std::fs::read_dir(dir.path().join("staging")).unwrap().next().is_none());
}

#[tokio::test]
async fn a_block_read_then_deleted_here_is_gone_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let blocks = blocks_of(&[1000, 2000, 3000]);
    stored_in_one_batch(&store, &blocks).await;
    for block in &blocks {
        assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    }
    assert!(store.delete(blocks[1].cid()).await.unwrap());
    assert_eq!(store.get(blocks[1].cid()).await.unwrap(), None);
    assert_eq!(
        store.get(blocks[2].cid()).await.unwrap(),
        Some(blocks[2].data().clone())
    );
}

#[tokio::test]
async fn a_block_read_before_another_process_compacted_its_pack_is_read_from_its_new_pack() {
    let dir = tempfile::tempdir().unwrap();
    let serving = FsBlockStore::open(dir.path()).await.unwrap();
    let blocks = blocks_of(&[100_000, 100_000, 100_000, 50_000]);
    stored_in_one_batch(&serving, &blocks).await;
    for block in &blocks {
        assert_eq!(serving.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    }
    // `ipfs-stream repo gc` beside the server: the last block moves to a pack of its own.
    let beside = FsBlockStore::open_with_settle_time(dir.path(), Duration::ZERO)
        .await
        .unwrap();
    let before = packs(dir.path());
    for block in &blocks[..3] {
        assert!(beside.delete(block.cid()).await.unwrap());
    }
    beside.reclaim_space().await.unwrap();
    assert_ne!(packs(dir.path()), before, "the pack was rewritten");
    assert_eq!(
        serving.get(blocks[3].cid()).await.unwrap(),
        Some(blocks[3].data().clone())
    );
}

#[tokio::test]
async fn a_block_another_process_deleted_stops_being_read_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let serving = FsBlockStore::open(dir.path()).await.unwrap();
    let blocks = blocks_of(&[1000, 2000]);
    stored_in_one_batch(&serving, &blocks).await;
    assert_eq!(
        serving.get(blocks[0].cid()).await.unwrap(),
        Some(blocks[0].data().clone())
    );
    let beside = FsBlockStore::open(dir.path()).await.unwrap();
    assert!(beside.delete(blocks[0].cid()).await.unwrap());
    // Its pack stays (the other block lives in it), so only the index says it is gone.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(serving.get(blocks[0].cid()).await.unwrap(), None);
    assert_eq!(
        serving.get(blocks[1].cid()).await.unwrap(),
        Some(blocks[1].data().clone())
    );
}

#[tokio::test]
async fn a_record_torn_at_the_end_of_its_pack_reads_short_and_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let blocks = blocks_of(&[1000, 5000]);
    stored_in_one_batch(&store, &blocks).await;
    // A power loss after the index was written but before the last record's bytes were.
    let at = store.location_of(blocks[1].cid()).await.unwrap().unwrap();
    let pack = std::fs::OpenOptions::new().write(true).open(&at.path).unwrap();
    pack.set_len(at.offset + 100).unwrap();

    let torn = store.get(blocks[1].cid()).await.unwrap().unwrap();
    assert_eq!(torn.len(), 100);
    assert_eq!(torn[..], blocks[1].data()[..100]);
    assert!(Block::verified(*blocks[1].cid(), torn).is_err());
    assert_eq!(
        store.get(blocks[0].cid()).await.unwrap(),
        Some(blocks[0].data().clone())
    );
}

#[tokio::test]
async fn a_block_kept_again_after_its_copy_tore_is_read_from_the_new_copy_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlockStore::open(dir.path()).await.unwrap();
    let block = Block::encode(cid::Version::V1, 0x55, Bytes::from(vec![7u8; 4000]));
    store.keep(&block).await.unwrap();
    assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
    // The cache copy tears (a power loss), a read refuses it, and the block is fetched and kept again.
    let at = store.location_of(block.cid()).await.unwrap().unwrap();
    let pack = std::fs::OpenOptions::new().write(true).open(&at.path).unwrap();
    pack.set_len(at.offset + 10).unwrap();
    store.keep(&block).await.unwrap();
    assert_eq!(store.get(block.cid()).await.unwrap(), Some(block.data().clone()));
}
