//! [`BlockStore`] on the filesystem: blocks appended to pack files under `blocks/`, and an index
//! ([`PackIndex`], SQLite in `blocks.db`) of where each one is.
//!
//! Packs, not a file per block: on ext4, creating thousands of fresh inodes costs more than writing
//! their bytes (ARCHITECTURE.md has the figures). An import writes all its blocks to one pack, in
//! order, as `cp` writes one file.
//!
//! A batch writes its pack under `staging/`. Commit syncs the pack's data, renames it into
//! `blocks/`, syncs that directory, and only then indexes its blocks, all in one durable
//! transaction: a block becomes visible only once its bytes are on the device, and the blocks of a
//! commit (its roots with them) become visible together. A crash leaves at worst a pack no row
//! points to: staging is cleared at open when no other process has the store open (a shared lock
//! on `staging.lock` says which do), and [`BlockStore::reclaim_space`] removes such packs.
//!
//! A record in a pack is `[key length: u32 LE][data length: u32 LE][key][data]`, the key being the
//! block's multihash, so a pack says what it holds without the index. Deletes remove index rows
//! only; [`BlockStore::reclaim_space`], run after garbage collection, removes the packs nothing
//! points into any more and rewrites the ones that are mostly dead.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use model::content::block::RAW;
use model::content::{Block, BlockBatch, BlockStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::block_locations::{self, BlockLocations};
use crate::error::{Error, io_error};
use crate::pack_index::{Durability, Entry, Location, PackIndex};

/// Bytes of a record's header before its key: the key's length and the data's.
pub(crate) const RECORD_HEADER_FIXED: u64 = 8;
/// Blocks queued for a pack's writer, so writing overlaps hashing with bounded memory.
const WRITES_IN_FLIGHT: usize = 8;
/// Writeback of a pack being written starts every this many bytes, so the sync at commit finds
/// most of an import already on the device.
const WRITEBACK_STEP: u64 = 8 << 20;
/// A pack of kept cache blocks is closed at this size and a new one started.
const KEPT_PACK_LIMIT: u64 = 64 << 20;
/// Packs modified more recently than this are left alone by [`BlockStore::reclaim_space`]:
/// another process on the same data dir may be between renaming a pack and indexing it.
const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(60);
/// Blocks moved per pack when files of the earlier one-file-per-block layout are packed.
const BLOCKS_PER_MOVED_PACK: usize = 1024;

/// Blocks in pack files under a directory.
#[derive(Clone)]
pub struct FsBlockStore {
    inner: Arc<Layout>,
}

struct Layout {
    blocks: PathBuf,
    staging: PathBuf,
    index: PackIndex,
    /// Where recently read blocks are (see [`crate::block_locations`]).
    locations: Mutex<BlockLocations>,
    kept: Mutex<Option<KeptPack>>,
    settle_time: Duration,
    /// A shared lock on `staging.lock`, held while the store is open: another process opening
    /// the same data directory (`add` beside `serve`) sees it, and leaves `staging/` alone.
    _in_use: std::fs::File,
}

/// Empties `staging/` (what a crashed process left there) if no other process has the store open,
/// then takes the shared lock that says this one has. A process that finds the lock held leaves
/// `staging/` as it is: the packs there may be another's batches, still being written.
fn clear_abandoned_staging(lock_path: &Path, staging: &Path) -> std::io::Result<std::fs::File> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    if lock.try_lock().is_ok() {
        if staging.exists() {
            std::fs::remove_dir_all(staging)?;
        }
        lock.unlock()?;
    }
    std::fs::create_dir_all(staging)?;
    // Another process opening in between takes the exclusive lock and clears staging/ too, before
    // this one has written anything there.
    lock.lock_shared()?;
    Ok(lock)
}

/// The pack kept cache blocks are appended to.
struct KeptPack {
    file: std::fs::File,
    name: String,
    length: u64,
}

/// Where a block is on disk (for tools and tests that look at the files themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAt {
    pub path: PathBuf,
    pub offset: u64,
    pub length: u64,
}

impl FsBlockStore {
    /// Opens the store under `root`, creating it; clears batches a crash left behind and moves
    /// blocks of the one-file-per-block layout into packs.
    pub async fn open(root: &Path) -> Result<Self, Error> {
        Self::open_with_settle_time(root, DEFAULT_SETTLE_TIME).await
    }

    /// [`FsBlockStore::open`], with packs modified within `settle_time` left alone by
    /// [`BlockStore::reclaim_space`].
    pub async fn open_with_settle_time(root: &Path, settle_time: Duration) -> Result<Self, Error> {
        let blocks = root.join("blocks");
        let staging = root.join("staging");
        tokio::fs::create_dir_all(&blocks)
            .await
            .map_err(|e| io_error(&blocks, e))?;
        let lock_path = root.join("staging.lock");
        let lock_at = lock_path.clone();
        let staging_at = staging.clone();
        let in_use = tokio::task::spawn_blocking(move || clear_abandoned_staging(&lock_at, &staging_at))
            .await
            .map_err(|e| io_error(&lock_path, std::io::Error::other(e)))?
            .map_err(|e| io_error(&lock_path, e))?;
        let index = PackIndex::open(&root.join("blocks.db")).await?;
        let store = Self {
            inner: Arc::new(Layout {
                blocks,
                staging,
                index,
                locations: Mutex::new(BlockLocations::new(
                    block_locations::TRUSTED_FOR,
                    block_locations::CAPACITY,
                )),
                kept: Mutex::new(None),
                settle_time,
                _in_use: in_use,
            }),
        };
        store.pack_block_files().await?;
        Ok(store)
    }

    /// Where a block is stored, if it is.
    pub async fn location_of(&self, cid: &Cid) -> Result<Option<StoredAt>, Error> {
        Ok(self.inner.index.locate(&key_of(cid)).await?.map(|at| StoredAt {
            path: self.inner.blocks.join(&at.pack),
            offset: at.offset,
            length: at.length,
        }))
    }

    fn locations(&self) -> std::sync::MutexGuard<'_, BlockLocations> {
        self.inner.locations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a block's data is: from the locations looked up lately (unless `ask_index`), or from
    /// the index with the blocks after it in its pack.
    async fn locate(&self, key: &[u8], ask_index: bool) -> Result<Option<Location>, Error> {
        let generation = {
            let locations = self.locations();
            if !ask_index && let Some(at) = locations.get(key, Instant::now()) {
                return Ok(Some(at));
            }
            locations.generation()
        };
        let run = self.inner.index.locate_run(key, block_locations::RUN_LENGTH).await?;
        let at = run.iter().find(|(next, _)| next == key).map(|(_, at)| at.clone());
        self.locations().insert_run(run, Instant::now(), generation);
        Ok(at)
    }

    /// The bytes at a block's location; `None` when its pack is gone (moved by compaction).
    async fn read_located(&self, key: &[u8], ask_index: bool) -> Result<Option<Option<Bytes>>, Error> {
        let Some(at) = self.locate(key, ask_index).await? else {
            return Ok(Some(None));
        };
        let path = self.inner.blocks.join(&at.pack);
        let read = tokio::task::spawn_blocking(move || {
            let read = read_record(&path, at.offset, at.length);
            (path, read)
        })
        .await;
        match read {
            Ok((_, Ok(data))) => Ok(Some(Some(Bytes::from(data)))),
            Ok((_, Err(e))) if e.kind() == std::io::ErrorKind::NotFound => {
                self.locations().forget(key);
                Ok(None)
            }
            Ok((path, Err(e))) => Err(io_error(&path, e)),
            Err(e) => Err(io_error(&self.inner.blocks, std::io::Error::other(e))),
        }
    }

    /// Moves the files of the earlier layout (`blocks/<shard>/<key>`) into packs, once: each
    /// file is removed after the pack holding it is indexed, so a crash midway loses nothing.
    async fn pack_block_files(&self) -> Result<(), Error> {
        let blocks = self.inner.blocks.clone();
        let files = tokio::task::spawn_blocking(move || block_files_of_earlier_layout(&blocks))
            .await
            .map_err(|e| io_error(&self.inner.blocks, std::io::Error::other(e)))??;
        if files.is_empty() {
            return Ok(());
        }
        tracing::info!(blocks = files.len(), "moving block files into packs");
        for group in files.chunks(BLOCKS_PER_MOVED_PACK) {
            let mut pack = PackBuilder::new(self.inner.clone());
            for (key, path) in group {
                let data = tokio::fs::read(path).await.map_err(|e| io_error(path, e))?;
                pack.append(key.hash().to_bytes(), Bytes::from(data)).await?;
            }
            pack.publish().await?;
            for (_, path) in group {
                tokio::fs::remove_file(path).await.map_err(|e| io_error(path, e))?;
            }
        }
        let blocks = self.inner.blocks.clone();
        tokio::task::spawn_blocking(move || {
            for shard in std::fs::read_dir(&blocks)?.flatten() {
                if shard.path().is_dir() {
                    // Left in place when it still holds something that was not a block.
                    let _ = std::fs::remove_dir(shard.path());
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| io_error(&self.inner.blocks, std::io::Error::other(e)))?
        .map_err(|e| io_error(&self.inner.blocks, e))
    }

    /// Appends a kept block to the current kept-blocks pack (started when there is none or it is
    /// full); returns the pack's name and the block's entry.
    fn append_kept(&self, key: Vec<u8>, data: &[u8]) -> Result<(String, Entry), Error> {
        let mut kept = self.inner.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_ref().is_none_or(|pack| pack.length >= KEPT_PACK_LIMIT) {
            let name = new_pack_name();
            let path = self.inner.blocks.join(&name);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            *kept = Some(KeptPack { file, name, length: 0 });
        }
        let pack = kept.as_mut().expect("a kept pack was just ensured");
        let header = record_header(&key, data.len());
        let written = pack
            .file
            .write_all_at(&header, pack.length)
            .and_then(|()| pack.file.write_all_at(data, pack.length + header.len() as u64));
        written.map_err(|e| io_error(&self.inner.blocks.join(&pack.name), e))?;
        let entry = Entry {
            key,
            offset: pack.length + header.len() as u64,
            length: data.len() as u64,
        };
        pack.length += (header.len() + data.len()) as u64;
        Ok((pack.name.clone(), entry))
    }

    /// Rewrites the blocks a pack still holds into a new pack, then removes it.
    async fn compact(&self, name: &str) -> Result<(), Error> {
        let path = self.inner.blocks.join(name);
        let mut pack = PackBuilder::new(self.inner.clone());
        for (key, at) in self.inner.index.in_pack(name).await? {
            let read_path = path.clone();
            let data = tokio::task::spawn_blocking(move || read_record(&read_path, at.offset, at.length))
                .await
                .map_err(|e| io_error(&path, std::io::Error::other(e)))?
                .map_err(|e| io_error(&path, e))?;
            pack.append(key, Bytes::from(data)).await?;
        }
        // The blocks' only copy moves: it is on the device before the old one goes.
        pack.publish().await?;
        if self.inner.index.in_pack(name).await?.is_empty() {
            tokio::fs::remove_file(&path).await.map_err(|e| io_error(&path, e))?;
        }
        Ok(())
    }
}

/// A block's key in the index: its multihash, the same under a CIDv0 and a CIDv1.
fn key_of(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

fn new_pack_name() -> String {
    format!("{}.pack", uuid::Uuid::new_v4())
}

fn record_header(key: &[u8], data_length: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(RECORD_HEADER_FIXED as usize + key.len());
    header.extend_from_slice(&(key.len() as u32).to_le_bytes());
    header.extend_from_slice(&(data_length as u32).to_le_bytes());
    header.extend_from_slice(key);
    header
}

/// Reads `length` bytes at `offset`; fewer if the pack ends first (a record torn by a power loss
/// then fails verification, as a torn file did). The read fills a buffer that was never zeroed:
/// zeroing each one for the read to overwrite took 7% of the server's CPU in a 1 GiB GET.
fn read_record(path: &Path, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let length = usize::try_from(length).map_err(std::io::Error::other)?;
    let mut data: Vec<u8> = Vec::with_capacity(length);
    while data.len() < length {
        let filled = data.len();
        let spare = &mut data.spare_capacity_mut()[..length - filled];
        let at = libc::off_t::try_from(offset + filled as u64).map_err(std::io::Error::other)?;
        // SAFETY: pread writes at most `spare.len()` bytes into the vector's spare capacity, which
        // the vector owns and nothing else reads meanwhile.
        let read = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match read {
            0 => break,
            // SAFETY: pread initialized the `read` bytes after the vector's length.
            read if read > 0 => unsafe { data.set_len(filled + read as usize) },
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(data)
}

/// The block files of the one-file-per-block layout, with the key each is named by.
fn block_files_of_earlier_layout(blocks: &Path) -> Result<Vec<(Cid, PathBuf)>, Error> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(blocks).map_err(|e| io_error(blocks, e))? {
        let shard = shard.map_err(|e| io_error(blocks, e))?.path();
        if !shard.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&shard).map_err(|e| io_error(&shard, e))? {
            let file = file.map_err(|e| io_error(&shard, e))?;
            match file.file_name().to_str().map(Cid::try_from) {
                Some(Ok(cid)) => files.push((cid, file.path())),
                _ => tracing::warn!(path = %file.path().display(), "not a block file; left in place"),
            }
        }
    }
    Ok(files)
}

/// Starts writeback of a range without waiting for it.
fn start_writeback(file: &std::fs::File, offset: u64, length: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is `file`'s, open for the call; SYNC_FILE_RANGE_WRITE only queues
    // writeback and does not wait for it.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            length as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// A pack being written under `staging/`: records are queued to a writer on a blocking thread,
/// and their entries kept for the index. Dropped unpublished, its file is removed.
struct PackBuilder {
    layout: Arc<Layout>,
    name: String,
    entries: Vec<Entry>,
    length: u64,
    writer: Option<PackWriter>,
}

struct PackWriter {
    records: mpsc::Sender<(Vec<u8>, Bytes)>,
    task: JoinHandle<Result<std::fs::File, Error>>,
}

impl PackWriter {
    fn start(path: PathBuf) -> Self {
        let (records, mut queued) = mpsc::channel::<(Vec<u8>, Bytes)>(WRITES_IN_FLIGHT);
        let task = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&path).map_err(|e| io_error(&path, e))?;
            let (mut written, mut flushed) = (0u64, 0u64);
            while let Some((key, data)) = queued.blocking_recv() {
                let header = record_header(&key, data.len());
                file.write_all(&header)
                    .and_then(|()| file.write_all(&data))
                    .map_err(|e| io_error(&path, e))?;
                written += (header.len() + data.len()) as u64;
                if written - flushed >= WRITEBACK_STEP {
                    start_writeback(&file, flushed, written - flushed);
                    flushed = written;
                }
            }
            Ok(file)
        });
        Self { records, task }
    }

    /// Waits for every queued record to be written; the file, or the first error.
    async fn finish(self) -> Result<std::fs::File, Error> {
        drop(self.records);
        self.task
            .await
            .map_err(|e| io_error(Path::new("pack writer"), std::io::Error::other(e)))?
    }
}

impl PackBuilder {
    fn new(layout: Arc<Layout>) -> Self {
        Self {
            layout,
            name: new_pack_name(),
            entries: Vec::new(),
            length: 0,
            writer: None,
        }
    }

    fn staged_path(&self) -> PathBuf {
        self.layout.staging.join(&self.name)
    }

    async fn append(&mut self, key: Vec<u8>, data: Bytes) -> Result<(), Error> {
        let header = RECORD_HEADER_FIXED + key.len() as u64;
        self.entries.push(Entry {
            key: key.clone(),
            offset: self.length + header,
            length: data.len() as u64,
        });
        self.length += header + data.len() as u64;
        if self.writer.is_none() {
            self.writer = Some(PackWriter::start(self.staged_path()));
        }
        let writer = self.writer.as_ref().expect("the writer was just started");
        if writer.records.send((key, data)).await.is_err() {
            // The writer stopped early: its error says why.
            let stopped = self.writer.take().expect("the writer is there").finish().await;
            let _ = tokio::fs::remove_file(self.staged_path()).await;
            return Err(stopped
                .err()
                .unwrap_or_else(|| io_error(&self.staged_path(), std::io::Error::other("the pack writer stopped"))));
        }
        Ok(())
    }

    /// Moves the pack into `blocks/` and indexes its blocks, all at once: the pack's bytes and
    /// name are on the device before the index names them, and the index before this returns.
    async fn publish(mut self) -> Result<(), Error> {
        let Some(writer) = self.writer.take() else {
            return Ok(()); // nothing was appended
        };
        let staged = self.staged_path();
        let target = self.layout.blocks.join(&self.name);
        let file = match writer.finish().await {
            Ok(file) => file,
            Err(e) => {
                let _ = tokio::fs::remove_file(&staged).await;
                return Err(e);
            }
        };
        let blocks = self.layout.blocks.clone();
        let placed_at = target.clone();
        tokio::task::spawn_blocking(move || {
            let placed = (|| -> Result<(), Error> {
                file.sync_data().map_err(|e| io_error(&staged, e))?;
                std::fs::rename(&staged, &placed_at).map_err(|e| io_error(&staged, e))?;
                let directory = std::fs::File::open(&blocks).map_err(|e| io_error(&blocks, e))?;
                directory.sync_all().map_err(|e| io_error(&blocks, e))
            })();
            if placed.is_err() {
                let _ = std::fs::remove_file(&staged);
                let _ = std::fs::remove_file(&placed_at);
            }
            placed
        })
        .await
        .map_err(|e| io_error(&target, std::io::Error::other(e)))??;
        if let Err(e) = self
            .layout
            .index
            .insert(&self.name, &self.entries, Durability::Synced)
            .await
        {
            let _ = tokio::fs::remove_file(&target).await;
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for PackBuilder {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return; // published, or never written
        };
        // Unpublished: the staged pack goes once its writer has stopped, off the async threads.
        let staged = self.staged_path();
        let PackWriter { records, task } = writer;
        drop(records);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move {
                let _ = task.await;
                if let Err(e) = tokio::fs::remove_file(&staged).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %staged.display(), error = %e, "could not remove a staged pack");
                }
            })),
            Err(_) => drop(std::fs::remove_file(&staged)),
        }
    }
}

#[async_trait]
impl BlockStore for FsBlockStore {
    async fn get(&self, cid: &Cid) -> model::Result<Option<Bytes>> {
        let key = key_of(cid);
        if let Some(found) = self.read_located(&key, false).await? {
            return Ok(found);
        }
        // The pack went between the lookup and the read: compaction moved the block. Once more,
        // from the index itself (another read may have put the old location back meanwhile).
        match self.read_located(&key, true).await? {
            Some(found) => Ok(found),
            None => Err(io_error(
                &self.inner.blocks,
                std::io::Error::new(std::io::ErrorKind::NotFound, "the pack indexed for a block is missing"),
            )
            .into()),
        }
    }

    async fn has(&self, cid: &Cid) -> model::Result<bool> {
        Ok(self.inner.index.contains(&key_of(cid)).await?)
    }

    async fn begin(&self) -> model::Result<Box<dyn BlockBatch>> {
        Ok(Box::new(FsBatch {
            pack: PackBuilder::new(self.inner.clone()),
            seen: HashSet::new(),
        }))
    }

    /// Appended to the pack of kept blocks and indexed without waiting for the disk: a lost or
    /// torn cache copy fails verification and is fetched again.
    async fn keep(&self, block: &Block) -> model::Result<()> {
        let store = self.clone();
        let data = block.data().clone();
        let key = key_of(block.cid());
        let (pack, entry) = tokio::task::spawn_blocking(move || store.append_kept(key, &data))
            .await
            .map_err(|e| model::Error::task("block write", e))??;
        self.inner.index.insert(&pack, &[entry], Durability::Lazy).await?;
        // Kept again because the copy read was torn or lost: that copy is not read again.
        self.locations().forget(&key_of(block.cid()));
        Ok(())
    }

    async fn delete(&self, cid: &Cid) -> model::Result<bool> {
        let key = key_of(cid);
        let removed = self.inner.index.remove(&key).await?;
        self.locations().forget(&key);
        Ok(removed)
    }

    async fn list(&self) -> model::Result<Vec<Cid>> {
        let mut cids = Vec::new();
        for key in self.inner.index.keys().await? {
            match cid::multihash::Multihash::<64>::from_bytes(&key) {
                Ok(hash) => cids.push(Cid::new_v1(RAW, hash)),
                Err(e) => tracing::warn!(error = %e, "an index key is not a multihash; ignored"),
            }
        }
        Ok(cids)
    }

    /// Removes packs no block is indexed in any more, and rewrites those whose indexed blocks
    /// are under half their size. Packs modified within the settle time are left for later.
    async fn reclaim_space(&self) -> model::Result<()> {
        let usage = self.inner.index.usage_by_pack().await?;
        let current_kept = self
            .inner
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|pack| pack.name.clone());
        let blocks = self.inner.blocks.clone();
        let settle_time = self.inner.settle_time;
        let settled = tokio::task::spawn_blocking(move || settled_packs(&blocks, settle_time))
            .await
            .map_err(|e| model::Error::task("listing packs", e))??;
        let (mut removed, mut compacted, mut freed) = (0u64, 0u64, 0u64);
        for (name, size) in settled {
            if Some(&name) == current_kept.as_ref() {
                continue;
            }
            let live = usage.get(&name).copied().unwrap_or_default();
            if live.blocks == 0 {
                let path = self.inner.blocks.join(&name);
                tokio::fs::remove_file(&path).await.map_err(|e| io_error(&path, e))?;
                removed += 1;
                freed += size;
            } else if live.bytes * 2 < size {
                self.compact(&name).await?;
                compacted += 1;
                freed += size - live.bytes;
            }
        }
        if removed + compacted > 0 {
            self.locations().clear();
        }
        tracing::info!(removed, compacted, freed_bytes = freed, "pack space reclaimed");
        Ok(())
    }
}

/// The packs under `blocks` not modified within `settle_time`, with their sizes.
fn settled_packs(blocks: &Path, settle_time: Duration) -> Result<Vec<(String, u64)>, Error> {
    let mut packs = Vec::new();
    for entry in std::fs::read_dir(blocks).map_err(|e| io_error(blocks, e))? {
        let entry = entry.map_err(|e| io_error(blocks, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".pack") {
            continue;
        }
        let metadata = entry.metadata().map_err(|e| io_error(&entry.path(), e))?;
        let age = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .unwrap_or_default();
        if metadata.is_file() && age >= settle_time {
            packs.push((name, metadata.len()));
        }
    }
    Ok(packs)
}

/// A batch: one pack, each block in it once.
struct FsBatch {
    pack: PackBuilder,
    seen: HashSet<Vec<u8>>,
}

#[async_trait]
impl BlockBatch for FsBatch {
    async fn put(&mut self, block: Block) -> model::Result<()> {
        let key = key_of(block.cid());
        if !self.seen.insert(key.clone()) {
            return Ok(()); // the same bytes again (repeated chunks)
        }
        let (_, data) = block.into_parts();
        Ok(self.pack.append(key, data).await?)
    }

    /// All staged blocks, roots with them, become visible in one index transaction, after their
    /// bytes are on the device.
    async fn commit(self: Box<Self>, _roots: &[Cid]) -> model::Result<()> {
        Ok(self.pack.publish().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_a_batch_in_order_asks_the_index_once_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockStore::open(dir.path()).await.unwrap();
        let blocks: Vec<Block> = (0..100u32)
            .map(|i| Block::encode(cid::Version::V1, RAW, Bytes::from(i.to_le_bytes().repeat(64))))
            .collect();
        let mut batch = store.begin().await.unwrap();
        for block in &blocks {
            batch.put(block.clone()).await.unwrap();
        }
        batch.commit(&[]).await.unwrap();

        for block in &blocks {
            assert_eq!(store.get(block.cid()).await.unwrap().as_ref(), Some(block.data()));
        }
        let runs = 100u64.div_ceil(u64::from(block_locations::RUN_LENGTH));
        assert_eq!(store.locations().runs_looked_up(), runs);
    }
}
