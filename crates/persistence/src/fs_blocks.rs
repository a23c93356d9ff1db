//! [`BlockStore`] on the filesystem: one file per block under `blocks/<shard>/<key>`, where the
//! key is the block's multihash as a CIDv1 raw string and the shard is its next-to-last two
//! characters (as Kubo's flatfs shards).
//!
//! Writes go to a batch's own directory under `staging/`; commit renames each file into place
//! (an atomic step per block), roots last. A block file is therefore either absent or whole under
//! its final name, and a root never appears before the blocks under it.
//!
//! Commit is also the durability point: the staged data is synced, then the other blocks' names,
//! then the roots' (one `syncfs` of the store's filesystem each, not one `fsync` per block), so
//! once commit returns the content survives a power loss, and at no moment can a crash leave a
//! root on disk whose blocks are not.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use model::content::store::storage_key;
use model::content::{Block, BlockBatch, BlockStore};
use tokio::task::JoinSet;

use crate::error::{Error, io_error};

/// Writes in flight per batch, so writing overlaps hashing without unbounded memory.
const WRITES_IN_FLIGHT: usize = 4;

/// Blocks as files under a directory.
#[derive(Clone)]
pub struct FsBlockStore {
    inner: Arc<Layout>,
}

struct Layout {
    blocks: PathBuf,
    staging: PathBuf,
}

impl FsBlockStore {
    /// Opens the store under `root`, creating it, and clears batches a crash left behind.
    pub async fn open(root: &Path) -> Result<Self, Error> {
        let blocks = root.join("blocks");
        let staging = root.join("staging");
        tokio::fs::create_dir_all(&blocks)
            .await
            .map_err(|e| io_error(&blocks, e))?;
        if tokio::fs::try_exists(&staging)
            .await
            .map_err(|e| io_error(&staging, e))?
        {
            tokio::fs::remove_dir_all(&staging)
                .await
                .map_err(|e| io_error(&staging, e))?;
        }
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| io_error(&staging, e))?;
        Ok(Self {
            inner: Arc::new(Layout { blocks, staging }),
        })
    }

    /// The final path of a block.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        let key = storage_key(cid).to_string();
        self.inner.blocks.join(shard(&key)).join(key)
    }
}

/// Writes a staged block and starts its writeback at once, so that the sync at commit finds most
/// of an import already on the device instead of all of it.
fn write_block(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    // SAFETY: the descriptor is `file`'s, open for the call; SYNC_FILE_RANGE_WRITE only queues
    // writeback and does not wait for it.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    Ok(())
}

/// Writes every dirty page and directory entry of the filesystem holding `dir` to its device:
/// one call for a whole batch, where an `fsync` per block file would wait on the journal once per
/// block.
fn sync_filesystem(dir: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(|e| io_error(dir, e))?;
    // SAFETY: `syncfs` only reads the descriptor, which `handle` keeps open for the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io_error(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn shard(key: &str) -> &str {
    let end = key.len() - 1;
    &key[end - 2..end]
}

fn not_found_is_none<T>(result: std::io::Result<T>, path: &Path) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

#[async_trait]
impl BlockStore for FsBlockStore {
    async fn get(&self, cid: &Cid) -> model::Result<Option<Bytes>> {
        let path = self.path_of(cid);
        Ok(not_found_is_none(tokio::fs::read(&path).await, &path)?.map(Bytes::from))
    }

    async fn has(&self, cid: &Cid) -> model::Result<bool> {
        let path = self.path_of(cid);
        Ok(tokio::fs::try_exists(&path).await.map_err(|e| io_error(&path, e))?)
    }

    async fn begin(&self) -> model::Result<Box<dyn BlockBatch>> {
        let dir = self.inner.staging.join(uuid::Uuid::new_v4().to_string());
        tokio::fs::create_dir(&dir).await.map_err(|e| io_error(&dir, e))?;
        Ok(Box::new(FsBatch {
            store: self.clone(),
            dir,
            staged: Vec::new(),
            seen: HashSet::new(),
            writes: JoinSet::new(),
        }))
    }

    /// Written under a staging name and renamed into place, so the block is whole under its
    /// name; not synced, since a lost or torn cache copy fails verification and is fetched again.
    async fn keep(&self, block: &Block) -> model::Result<()> {
        let key = storage_key(block.cid());
        let staged = self.inner.staging.join(format!("kept-{}", uuid::Uuid::new_v4()));
        let target = self.path_of(&key);
        let data = block.data().clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let parent = target.parent().expect("a block path has a shard directory");
            let placed = std::fs::write(&staged, &data)
                .map_err(|e| io_error(&staged, e))
                .and_then(|()| std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e)))
                .and_then(|()| std::fs::rename(&staged, &target).map_err(|e| io_error(&staged, e)));
            if placed.is_err() {
                let _ = std::fs::remove_file(&staged);
            }
            placed
        })
        .await
        .map_err(|e| model::Error::task("block write", e))??;
        Ok(())
    }

    async fn delete(&self, cid: &Cid) -> model::Result<bool> {
        let path = self.path_of(cid);
        Ok(not_found_is_none(tokio::fs::remove_file(&path).await, &path)?.is_some())
    }

    async fn list(&self) -> model::Result<Vec<Cid>> {
        let root = self.inner.blocks.clone();
        let listed = tokio::task::spawn_blocking(move || -> Result<Vec<Cid>, Error> {
            let mut cids = Vec::new();
            for shard in std::fs::read_dir(&root).map_err(|e| io_error(&root, e))? {
                let shard = shard.map_err(|e| io_error(&root, e))?.path();
                for file in std::fs::read_dir(&shard).map_err(|e| io_error(&shard, e))? {
                    let file = file.map_err(|e| io_error(&shard, e))?;
                    match file.file_name().to_str().map(Cid::try_from) {
                        Some(Ok(cid)) => cids.push(cid),
                        _ => tracing::warn!(path = %file.path().display(), "not a block file; ignored"),
                    }
                }
            }
            Ok(cids)
        })
        .await
        .map_err(|e| model::Error::Store(format!("listing blocks: {e}")))??;
        Ok(listed)
    }
}

/// A batch staged in its own directory; dropped uncommitted, it is removed.
struct FsBatch {
    store: FsBlockStore,
    dir: PathBuf,
    /// Keys staged, in order, each once.
    staged: Vec<Cid>,
    seen: HashSet<Cid>,
    writes: JoinSet<Result<(), Error>>,
}

impl FsBatch {
    async fn settle_one(&mut self) -> model::Result<()> {
        match self.writes.join_next().await {
            Some(joined) => Ok(joined.map_err(|e| model::Error::task("block write", e))??),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl BlockBatch for FsBatch {
    async fn put(&mut self, block: Block) -> model::Result<()> {
        while self.writes.len() >= WRITES_IN_FLIGHT {
            self.settle_one().await?;
        }
        let key = storage_key(block.cid());
        if !self.seen.insert(key) {
            return Ok(()); // the same bytes again (repeated chunks)
        }
        let path = self.dir.join(key.to_string());
        self.staged.push(key);
        self.writes
            .spawn_blocking(move || write_block(&path, block.data()).map_err(|e| io_error(&path, e)));
        Ok(())
    }

    async fn commit(mut self: Box<Self>, roots: &[Cid]) -> model::Result<()> {
        while !self.writes.is_empty() {
            self.settle_one().await?;
        }
        let mut root_keys: Vec<Cid> = Vec::with_capacity(roots.len());
        for key in roots.iter().map(storage_key) {
            if !root_keys.contains(&key) {
                root_keys.push(key); // a root named twice is renamed once
            }
        }
        let others: Vec<Cid> = self.staged.iter().filter(|k| !root_keys.contains(k)).copied().collect();
        let roots: Vec<Cid> = root_keys.into_iter().filter(|k| self.seen.contains(k)).collect();
        let store = self.store.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let mut made_shards = HashSet::new();
            let mut place = |keys: &[Cid]| -> Result<(), Error> {
                for key in keys {
                    let target = store.path_of(key);
                    let parent = target.parent().expect("a block path has a shard directory");
                    if made_shards.insert(parent.to_path_buf()) {
                        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
                    }
                    let staged = dir.join(key.to_string());
                    std::fs::rename(&staged, &target).map_err(|e| io_error(&staged, e))?;
                }
                Ok(())
            };
            // The bytes first, then the names that point at them, roots last.
            sync_filesystem(&store.inner.blocks)?;
            place(&others)?;
            sync_filesystem(&store.inner.blocks)?;
            place(&roots)?;
            sync_filesystem(&store.inner.blocks)
        })
        .await
        .map_err(|e| model::Error::task("block commit", e))??;
        Ok(())
    }
}

impl Drop for FsBatch {
    fn drop(&mut self) {
        self.writes.abort_all();
        // Committed or not, the staging directory goes: after a commit it holds only duplicates.
        // An aborted import may have left a thousand files: removed off the async threads.
        let dir = std::mem::take(&mut self.dir);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a staging directory");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
