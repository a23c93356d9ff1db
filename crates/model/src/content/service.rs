//! The content service: the one port the HTTP and CLI faces use for content.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;

use async_trait::async_trait;
use cid::{Cid, Version};
use tokio::sync::RwLock;

use super::block::{Block, DAG_PB};
use super::blocks::{Blocks, DEFAULT_CACHE_BYTES};
use super::car::{self, CarImport, CarScope};
use super::dagpb::PbNode;
use super::directory::{self, DirEntry};
use super::importer::{self, ImportOptions, ImportSummary};
use super::node::{Node, NodeKind};
use super::reader::{ByteRange, read_file_range};
use super::repository::{ContentRecord, ContentRepository, Page};
use super::store::{BlockStore, ByteStream, storage_key};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::notifications::{Event, Notifier, emit};

/// What describes an upload besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddRequest {
    pub options: ImportOptions,
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub pin: bool,
    /// Bytes accepted at most; more fails with `TooLarge` and stores nothing.
    pub limit: Option<u64>,
}

/// A node's kind and sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStat {
    pub cid: Cid,
    pub kind: NodeKind,
    /// Content bytes of a file (the target's length for a symlink, 0 for a directory).
    pub size: u64,
    /// Bytes of the whole DAG: this block plus every link's recorded size.
    pub dag_size: u64,
    /// Direct links of the root block.
    pub links: usize,
}

/// The result of a garbage collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub kept: u64,
    pub removed: Vec<Cid>,
}

/// The result of rehashing every stored block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub corrupted: Vec<Cid>,
}

/// Adding, reading, pinning and collecting content.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContentService: Send + Sync {
    /// Imports a byte stream as a UnixFS file; nothing is visible unless it all arrives.
    async fn add(&self, input: ByteStream, request: AddRequest) -> Result<ContentRecord>;

    async fn stat(&self, cid: &Cid) -> Result<NodeStat>;

    /// The CIDs along a path of names under `root`: the root first, the target last.
    async fn resolve(&self, root: &Cid, path: &[String]) -> Result<Vec<Cid>>;

    /// A byte range of a file, fetched and verified block by block as it is consumed.
    async fn read(&self, cid: &Cid, range: ByteRange) -> Result<ByteStream>;

    async fn list_directory(&self, cid: &Cid) -> Result<Vec<DirEntry>>;

    /// One verified block.
    async fn block(&self, cid: &Cid) -> Result<Block>;

    /// A CAR rooted at `root`: the blocks along `path`, then those under its target that `scope`
    /// asks for (the whole DAG with [`CarScope::All`]).
    async fn export_car(&self, root: &Cid, path: &[String], scope: CarScope) -> Result<ByteStream>;

    /// Imports a CAR; nothing is visible unless every block verifies and the DAG is complete.
    async fn import_car(&self, input: ByteStream, pin: bool) -> Result<CarImport>;

    async fn pin(&self, cid: &Cid) -> Result<()>;

    async fn unpin(&self, cid: &Cid) -> Result<()>;

    async fn pins(&self) -> Result<Vec<Cid>>;

    /// Unpins and forgets a root; its blocks go at the next collection.
    async fn remove(&self, cid: &Cid) -> Result<()>;

    async fn record(&self, cid: &Cid) -> Result<Option<ContentRecord>>;

    async fn records(&self, page: Page) -> Result<(Vec<ContentRecord>, u64)>;

    /// Deletes every block not reachable from a pin.
    async fn collect_garbage(&self) -> Result<GcReport>;

    /// Rehashes every stored block and names those that do not match.
    async fn verify_store(&self) -> Result<VerifyReport>;
}

/// [`ContentService`] over a block store and a content repository.
pub struct ContentNode {
    blocks: Blocks,
    records: Arc<dyn ContentRepository>,
    notifier: Option<Arc<dyn Notifier>>,
    faults: Option<Arc<crate::faults::Faults>>,
    /// Taken shared by commits and exclusively by garbage collection, so a collection never
    /// deletes blocks of a commit it did not see.
    collection: RwLock<()>,
}

impl ContentNode {
    /// A node with the default cache of verified blocks.
    pub fn new(store: Arc<dyn BlockStore>, records: Arc<dyn ContentRepository>) -> Self {
        Self::with_cache(store, records, DEFAULT_CACHE_BYTES)
    }

    /// A node keeping up to `cache_bytes` of verified blocks in memory.
    pub fn with_cache(store: Arc<dyn BlockStore>, records: Arc<dyn ContentRepository>, cache_bytes: u64) -> Self {
        Self {
            blocks: Blocks::new(store, cache_bytes),
            records,
            notifier: None,
            faults: None,
            collection: RwLock::new(()),
        }
    }

    /// Publishes an event for every change of content and pins.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Counts of what the store served (shared; they keep counting).
    pub fn store_counters(&self) -> Arc<super::blocks::StoreCounters> {
        self.blocks.counters().clone()
    }

    /// Blocks the store lacks are fetched from `remote`'s upstreams, verified, and kept as cache.
    pub fn with_remote(mut self, remote: Arc<super::remote::Remote>) -> Self {
        self.blocks = self.blocks.with_remote(remote);
        self
    }

    /// Blocks fetched from the upstreams count against `budget`; see [`ContentNode::evict_over_budget`].
    pub fn with_cache_budget(mut self, budget: Arc<super::cache_budget::CacheBudget>) -> Self {
        self.blocks = self.blocks.with_budget(budget);
        self
    }

    pub fn cache_budget(&self) -> Option<Arc<super::cache_budget::CacheBudget>> {
        self.blocks.budget().cloned()
    }

    /// Deletes the least recently used kept remote blocks until the cache is back under its
    /// budget (to 90% of it), never a block of pinned content; returns how many went.
    pub async fn evict_over_budget(&self) -> Result<usize> {
        let Some(budget) = self.blocks.budget().cloned() else {
            return Ok(0);
        };
        let _exclusive = self.collection.write().await;
        let pins = self.records.pinned().await?;
        let pinned = self.reachable(&pins).await?;
        let eviction = budget.take_eviction(|key| pinned.contains(key));
        let mut evicted = 0;
        for key in &eviction.evict {
            if self.blocks.store().delete(key).await? {
                evicted += 1;
            }
            self.blocks.forget(key);
        }
        let mut gone = eviction.evict;
        gone.extend(eviction.now_pinned);
        budget.forget(&gone).await?;
        self.blocks
            .counters()
            .evicted_blocks
            .fetch_add(evicted as u64, std::sync::atomic::Ordering::Relaxed);
        self.blocks.store().reclaim_space().await?;
        let usage = budget.usage();
        tracing::info!(
            evicted,
            cached_bytes = usage.bytes,
            max_bytes = usage.max_bytes,
            "remote blocks evicted"
        );
        Ok(evicted)
    }

    /// The upstream gateways, when configured.
    pub fn remote(&self) -> Option<Arc<super::remote::Remote>> {
        self.blocks.remote().cloned()
    }

    /// Fetches every block of the DAG under `root` the store lacks, and waits until each is
    /// kept; a no-op without upstreams. Progress goes to the log every few seconds.
    async fn fetch_whole_dag(&self, root: &Cid) -> Result<()> {
        const IN_FLIGHT: usize = 8;
        if self.blocks.remote().is_none() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut last_report = started;
        let (mut seen, mut fetched, mut bytes) = (HashSet::new(), 0u64, 0u64);
        let mut level = vec![*root];
        while !level.is_empty() {
            let results: Vec<Result<(Cid, Option<Block>)>> = futures::stream::iter(level.drain(..))
                .filter(|cid| futures::future::ready(seen.insert(storage_key(cid))))
                .map(|cid| async move { self.blocks.keep_locally(&cid).await.map(|f| (cid, f)) })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            for result in results {
                let (cid, was_fetched) = result?;
                if let Some(block) = &was_fetched {
                    fetched += 1;
                    bytes += block.data().len() as u64;
                }
                if cid.codec() == DAG_PB {
                    // A block already here is read from the store; one just fetched, not again.
                    let block = match was_fetched {
                        Some(block) => block,
                        None => self.blocks.get(&cid).await?,
                    };
                    for link in PbNode::decode_block(&cid, block.data().clone())?.links {
                        level.push(link.target(&cid)?);
                    }
                }
            }
            if last_report.elapsed() >= std::time::Duration::from_secs(2) {
                last_report = std::time::Instant::now();
                tracing::info!(%root, blocks_seen = seen.len(), fetched, bytes, "fetching the DAG to pin");
            }
        }
        if fetched > 0 {
            tracing::info!(%root, blocks = seen.len(), fetched, bytes, secs = started.elapsed().as_secs_f32(),
                "fetched the DAG to pin");
        }
        // Blocks read earlier as cache are pinned content from now on.
        if let Some(budget) = self.blocks.budget() {
            budget.release(&seen.into_iter().collect::<Vec<_>>()).await?;
        }
        Ok(())
    }

    /// Reads wait out the store latency injected in `faults`.
    pub fn with_faults(mut self, faults: Arc<crate::faults::Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    async fn injected_delay(&self) {
        if let Some(faults) = &self.faults {
            faults.delay_store_read().await;
        }
    }

    fn notify(&self, event: Event) {
        if let Some(notifier) = &self.notifier {
            emit(notifier.as_ref(), event);
        }
    }

    fn notify_added(&self, record: &ContentRecord) {
        self.notify(Event::ContentAdded {
            cid: record.cid.to_string(),
            size: record.size,
            name: record.name.clone(),
            blocks: record.blocks,
            pinned: record.pinned,
        });
    }

    async fn file_root(&self, cid: &Cid) -> Result<(Block, u64)> {
        self.injected_delay().await;
        let block = self.blocks.get(cid).await?;
        match Node::parse(&block)? {
            Node::File { size, .. } => Ok((block, size)),
            other => Err(Error::WrongKind {
                cid: *cid,
                expected: "file",
                actual: other.kind().as_str(),
            }),
        }
    }

    /// Every block reachable from `roots` (storage keys), fetching only dag-pb blocks.
    async fn reachable(&self, roots: &[Cid]) -> Result<HashSet<Cid>> {
        let mut marked = HashSet::new();
        let mut stack = roots.to_vec();
        while let Some(cid) = stack.pop() {
            if !marked.insert(storage_key(&cid)) || cid.codec() != DAG_PB {
                continue;
            }
            let block = self.blocks.get(&cid).await?;
            for link in PbNode::decode_block(&cid, block.data().clone())?.links {
                stack.push(link.target(&cid)?);
            }
        }
        Ok(marked)
    }
}

fn version_number(cid: &Cid) -> u8 {
    match cid.version() {
        Version::V0 => 0,
        Version::V1 => 1,
    }
}

#[async_trait]
impl ContentService for ContentNode {
    async fn add(&self, input: ByteStream, request: AddRequest) -> Result<ContentRecord> {
        let mut batch = self.blocks.store().begin().await?;
        let ImportSummary { root, size, blocks, .. } =
            importer::import(input, request.options, batch.as_mut(), request.limit).await?;
        let _commit = self.collection.read().await;
        batch.commit(&[root]).await?;
        if request.pin {
            self.blocks.store().pin(&root).await?;
        }
        let record = ContentRecord {
            cid: root,
            size,
            name: request.name,
            content_type: request.content_type,
            cid_version: version_number(&root),
            blocks,
            created_at_ms: now_ms(),
            pinned: request.pin,
        };
        self.records.save(&record).await?;
        tracing::info!(cid = %root, size, blocks, "content added");
        let record = self.records.get(&root).await?.unwrap_or(record);
        self.notify_added(&record);
        Ok(record)
    }

    async fn stat(&self, cid: &Cid) -> Result<NodeStat> {
        self.injected_delay().await;
        let block = self.blocks.get(cid).await?;
        let block_len = block.data().len() as u64;
        let node = Node::parse(&block)?;
        let (size, links, linked): (u64, usize, u64) = match &node {
            Node::File { size, children, .. } => {
                let linked = if children.is_empty() {
                    0
                } else {
                    PbNode::decode_block(cid, block.data().clone())?
                        .links
                        .iter()
                        .map(|l| l.tsize.unwrap_or(0))
                        .sum()
                };
                (*size, children.len(), linked)
            }
            Node::Directory { links } | Node::HamtShard { links, .. } => {
                (0, links.len(), links.iter().map(|l| l.tsize).sum())
            }
            Node::Symlink { target } => (target.len() as u64, 0, 0),
        };
        Ok(NodeStat {
            cid: *cid,
            kind: node.kind(),
            size,
            dag_size: block_len + linked,
            links,
        })
    }

    async fn resolve(&self, root: &Cid, path: &[String]) -> Result<Vec<Cid>> {
        self.injected_delay().await;
        directory::resolve(&self.blocks, root, path).await
    }

    async fn read(&self, cid: &Cid, range: ByteRange) -> Result<ByteStream> {
        let (root, size) = self.file_root(cid).await?;
        let (start, end) = range.clamp(cid, size)?;
        Ok(read_file_range(
            self.blocks.clone(),
            root,
            start,
            end,
            range.reads_ahead(),
        ))
    }

    async fn list_directory(&self, cid: &Cid) -> Result<Vec<DirEntry>> {
        directory::list(&self.blocks, cid).await
    }

    async fn block(&self, cid: &Cid) -> Result<Block> {
        self.blocks.get(cid).await
    }

    async fn export_car(&self, root: &Cid, path: &[String], scope: CarScope) -> Result<ByteStream> {
        // Resolving first fails before the first byte when the root or the path is unusable.
        let (trail, visited) = directory::resolve_visiting(&self.blocks, root, path).await?;
        let target = *trail.last().expect("a trail holds at least the root");
        self.blocks.get(&target).await?;
        Ok(car::export_scoped(self.blocks.clone(), *root, visited, target, scope))
    }

    async fn import_car(&self, input: ByteStream, pin: bool) -> Result<CarImport> {
        let mut batch = self.blocks.store().begin().await?;
        // Held from the start: the import counts on stored blocks its CAR links to but leaves out,
        // and a collection must not delete them before the commit.
        let _commit = self.collection.read().await;
        let imported = car::import(&self.blocks, input, batch.as_mut()).await?;
        batch.commit(&imported.roots).await?;
        for root in &imported.roots {
            if pin {
                self.blocks.store().pin(root).await?;
            }
            let stat = self.stat(root).await?;
            let record = ContentRecord {
                cid: *root,
                size: stat.size,
                name: None,
                content_type: None,
                cid_version: version_number(root),
                blocks: imported.blocks,
                created_at_ms: now_ms(),
                pinned: pin,
            };
            self.records.save(&record).await?;
            self.notify_added(&record);
        }
        tracing::info!(roots = ?imported.roots, blocks = imported.blocks, "CAR imported");
        Ok(imported)
    }

    async fn pin(&self, cid: &Cid) -> Result<()> {
        // Held while the DAG is fetched, so a collection cannot take blocks kept for this pin.
        let _fetching = self.collection.read().await;
        self.fetch_whole_dag(cid).await?;
        if self.records.set_pinned(cid, true).await? {
            self.blocks.store().pin(cid).await?;
            self.notify(Event::PinAdded { cid: cid.to_string() });
            return Ok(());
        }
        // Pinning content the server was not given directly (a subpath, a block from a CAR):
        // record it, so it shows up in pin listings.
        let stat = self.stat(cid).await?;
        self.blocks.store().pin(cid).await?;
        self.records
            .save(&ContentRecord {
                cid: *cid,
                size: stat.size,
                name: None,
                content_type: None,
                cid_version: version_number(cid),
                blocks: 0,
                created_at_ms: now_ms(),
                pinned: true,
            })
            .await?;
        self.notify(Event::PinAdded { cid: cid.to_string() });
        Ok(())
    }

    async fn unpin(&self, cid: &Cid) -> Result<()> {
        if !self.records.set_pinned(cid, false).await? {
            return Err(Error::NotFound(*cid));
        }
        self.blocks.store().unpin(cid).await?;
        self.notify(Event::PinRemoved { cid: cid.to_string() });
        Ok(())
    }

    async fn pins(&self) -> Result<Vec<Cid>> {
        self.records.pinned().await
    }

    async fn remove(&self, cid: &Cid) -> Result<()> {
        let record = self.records.get(cid).await?.ok_or(Error::NotFound(*cid))?;
        if record.pinned {
            self.blocks.store().unpin(cid).await?;
        }
        self.records.delete(cid).await?;
        self.notify(Event::ContentRemoved { cid: cid.to_string() });
        Ok(())
    }

    async fn record(&self, cid: &Cid) -> Result<Option<ContentRecord>> {
        self.records.get(cid).await
    }

    async fn records(&self, page: Page) -> Result<(Vec<ContentRecord>, u64)> {
        self.records.list(page).await
    }

    async fn collect_garbage(&self) -> Result<GcReport> {
        let _exclusive = self.collection.write().await;
        let pins = self.records.pinned().await?;
        let keep = self.reachable(&pins).await?;
        let mut report = GcReport::default();
        for key in self.blocks.store().list().await? {
            if keep.contains(&key) {
                report.kept += 1;
            } else if self.blocks.store().delete(&key).await? {
                report.removed.push(key);
            }
        }
        for key in &report.removed {
            self.blocks.forget(key);
        }
        if let Some(budget) = self.blocks.budget() {
            budget.release(&report.removed).await?;
        }
        self.blocks.store().reclaim_space().await?;
        tracing::info!(kept = report.kept, removed = report.removed.len(), "garbage collected");
        Ok(report)
    }

    async fn verify_store(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for key in self.blocks.store().list().await? {
            report.checked += 1;
            match self.blocks.read_verified(&key).await {
                Ok(_) => {}
                Err(Error::HashMismatch(cid)) => report.corrupted.push(cid),
                Err(Error::NotFound(_)) => {} // deleted meanwhile
                Err(other) => return Err(other),
            }
        }
        Ok(report)
    }
}
