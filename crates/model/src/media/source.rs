//! Media bytes from the content store for the (blocking) demuxers: read by ranges on demand
//! (progressive loading: a demuxer touches only what it plays, so the first frame does not wait
//! for the whole file) or loaded whole first.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures::TryStreamExt;
use tokio::runtime::Handle;

use crate::content::{ByteRange, ContentService};

/// Bytes fetched per range read that goes on from the last one (the demuxer reading on as it
/// plays), the default chunk size…
const WINDOW: u64 = 256 * 1024;
/// …and per read elsewhere (an index or metadata at the end of the file, the way back from it):
/// such reads are short, and a whole window there was mostly never played (about a fifth of what
/// a viewer who left after 10 s cost the store).
const SEEK_WINDOW: u64 = 64 * 1024;
/// How long to wait before each new attempt at a range read that failed for a passing reason: a
/// stall of the playback, rather than the end of a playback all its viewers share.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// No new attempt starts later than this after the first began: a read that failed slowly (a
/// remote node's timeout) is not made again.
const RETRY_BUDGET: Duration = Duration::from_millis(1500);
/// A range read that took this long shows a slow store (a remote one, one under load): from then
/// on the next window is read ahead, while the current one plays, so that a stall of the store
/// costs the playback nothing until it outlasts the window's media. On a fast store nothing is
/// read ahead, and a viewer who leaves early has cost only what the demuxer touched; for the same
/// reason its range reads ask an upstream for the window alone.
const SLOW_READ: Duration = Duration::from_millis(50);

/// A range read in the background: its bytes, and the attempts it took.
type ReadAhead = tokio::task::JoinHandle<(std::io::Result<Bytes>, u64)>;

/// A file in the store as `Read + Seek`. Must be used off the async runtime (in
/// `spawn_blocking`): each miss blocks on a range read.
pub struct StoreSource {
    content: Arc<dyn ContentService>,
    cid: Cid,
    size: u64,
    position: u64,
    window: (u64, Bytes),
    runtime: Handle,
    /// The next window, being read ahead (once a read was slow): where it starts, and the read.
    ahead: Option<(u64, ReadAhead)>,
    read_ahead: bool,
    /// Range reads made, for the playback counters.
    pub reads: u64,
}

impl Drop for StoreSource {
    fn drop(&mut self) {
        if let Some((_, read)) = self.ahead.take() {
            read.abort();
        }
    }
}

impl StoreSource {
    pub fn new(content: Arc<dyn ContentService>, cid: Cid, size: u64, runtime: Handle) -> Self {
        Self {
            content,
            cid,
            size,
            position: 0,
            window: (0, Bytes::new()),
            runtime,
            ahead: None,
            read_ahead: false,
            reads: 0,
        }
    }

    /// The whole file, read once (playback without progressive loading).
    pub fn load_all(content: &Arc<dyn ContentService>, cid: &Cid, runtime: &Handle) -> std::io::Result<Bytes> {
        read_range(content, cid, ByteRange::full(), runtime, &mut 0)
    }

    fn fetch(&mut self, at: u64) -> std::io::Result<()> {
        let began = Instant::now();
        let data = match self.ahead.take() {
            Some((start, read)) if start == at => {
                let (data, attempts) = self
                    .runtime
                    .block_on(read)
                    .unwrap_or_else(|error| (Err(std::io::Error::other(error)), 0));
                self.reads += attempts;
                data?
            }
            other => {
                if let Some((_, read)) = other {
                    // A seek elsewhere: what was read ahead is not wanted.
                    read.abort();
                }
                let (start, data) = &self.window;
                let window = if at == start + data.len() as u64 {
                    WINDOW
                } else {
                    SEEK_WINDOW
                };
                // Windows end on a multiple of WINDOW, where the default chunker cuts blocks: a
                // window across a block boundary would read two whole blocks from the store.
                let window = window.min(WINDOW - at % WINDOW);
                let range = ByteRange::new(at, Some(window.min(self.size - at))).without_read_ahead();
                let data = read_range(&self.content, &self.cid, range, &self.runtime, &mut self.reads)?;
                self.read_ahead |= began.elapsed() >= SLOW_READ;
                data
            }
        };
        let next = at + data.len() as u64;
        self.window = (at, data);
        if self.read_ahead && next < self.size {
            let (content, cid) = (self.content.clone(), self.cid);
            let range = ByteRange::new(next, Some((WINDOW - next % WINDOW).min(self.size - next))).without_read_ahead();
            let read = self.runtime.spawn(async move {
                let mut attempts = 0;
                let data = read_with_retries(&content, &cid, range, &mut attempts).await;
                (data, attempts)
            });
            self.ahead = Some((next, read));
        }
        Ok(())
    }
}

/// Reads `range` of `cid`, again after a failure that may pass (see [`RETRY_DELAYS`] and
/// [`RETRY_BUDGET`]); counts each attempt in `attempts`.
fn read_range(
    content: &Arc<dyn ContentService>,
    cid: &Cid,
    range: ByteRange,
    runtime: &Handle,
    attempts: &mut u64,
) -> std::io::Result<Bytes> {
    runtime.block_on(read_with_retries(content, cid, range, attempts))
}

async fn read_with_retries(
    content: &Arc<dyn ContentService>,
    cid: &Cid,
    range: ByteRange,
    attempts: &mut u64,
) -> std::io::Result<Bytes> {
    let mut delays = RETRY_DELAYS.iter();
    let started = Instant::now();
    loop {
        let read = async { content.read(cid, range).await?.try_collect::<Vec<Bytes>>().await }.await;
        *attempts += 1;
        match read {
            Ok(chunks) => return Ok(chunks.concat().into()),
            Err(error) if error.is_transient() => match delays.next() {
                Some(delay) if started.elapsed() + *delay <= RETRY_BUDGET => {
                    tracing::warn!(%error, %cid, at = range.start(), "range read failed; trying again");
                    tokio::time::sleep(*delay).await;
                }
                _ => return Err(std::io::Error::other(error)),
            },
            Err(error) => return Err(std::io::Error::other(error)),
        }
    }
}

impl Read for StoreSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let (start, data) = &self.window;
        let inside = self.position >= *start && self.position < start + data.len() as u64;
        if !inside {
            self.fetch(self.position)?;
        }
        let (start, data) = &self.window;
        let offset = (self.position - start) as usize;
        let n = buf.len().min(data.len() - offset);
        buf[..n].copy_from_slice(&data[offset..offset + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for StoreSource {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(n) => self.size as i128 + n as i128,
            SeekFrom::Current(n) => self.position as i128 + n as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.position = target as u64;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{AddRequest, ContentNode, MemoryBlockStore, MemoryContentRepository};

    #[test]
    fn reads_and_seeks_by_ranges_only_where_asked() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let node: Arc<dyn ContentService> = Arc::new(ContentNode::new(
            Arc::new(MemoryBlockStore::new()),
            Arc::new(MemoryContentRepository::new()),
        ));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let input = futures::stream::iter([Ok(Bytes::from(data.clone()))]);
        let record = runtime
            .block_on(node.add(Box::pin(input), AddRequest::default()))
            .unwrap();
        let mut source = StoreSource::new(node.clone(), record.cid, record.size, runtime.handle().clone());
        let handle = std::thread::spawn(move || {
            let mut head = [0u8; 10];
            source.read_exact(&mut head).unwrap();
            source.seek(SeekFrom::Start(2_999_990)).unwrap();
            let mut tail = Vec::new();
            source.read_to_end(&mut tail).unwrap();
            let reads = source.reads;
            // Back to the middle: a short window there, then whole ones again as it reads on.
            source.seek(SeekFrom::Start(1_000_000)).unwrap();
            let mut middle = vec![0u8; (SEEK_WINDOW + 10) as usize];
            source.read_exact(&mut middle).unwrap();
            let windows = (source.reads - reads, source.window.1.len() as u64);
            (head, tail, reads, middle, windows)
        });
        let (head, tail, reads, middle, windows) = handle.join().unwrap();
        assert_eq!(&head[..], &data[..10]);
        assert_eq!(tail, &data[2_999_990..]);
        assert_eq!(reads, 2, "two windows, not the whole file");
        assert_eq!(&middle[..], &data[1_000_000..1_000_000 + middle.len()]);
        assert_eq!(windows, (2, WINDOW), "a short window after the seek, then a whole one");
        let all = std::thread::spawn(move || StoreSource::load_all(&node, &record.cid, runtime.handle()).unwrap())
            .join()
            .unwrap();
        assert_eq!(all.len(), data.len());
    }

    /// A store that takes `delay` for every range read, and counts them.
    fn store_taking(delay: Duration, data: Vec<u8>) -> (Arc<dyn ContentService>, Arc<std::sync::atomic::AtomicU64>) {
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = reads.clone();
        let mut store = crate::content::service::MockContentService::new();
        store.expect_read().returning(move |_, range| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(delay);
            let (start, end) = range.clamp(&Cid::default(), data.len() as u64).unwrap();
            let slice = Bytes::copy_from_slice(&data[start as usize..end as usize]);
            Ok(Box::pin(futures::stream::iter([Ok(slice)])))
        });
        (Arc::new(store), reads)
    }

    #[test]
    fn a_slow_store_is_read_a_window_ahead_and_a_fast_one_is_not() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let data: Vec<u8> = (0..3 * WINDOW as u32).map(|i| (i % 251) as u8).collect();
        for (delay, ahead) in [(SLOW_READ * 2, true), (Duration::ZERO, false)] {
            let (store, reads) = store_taking(delay, data.clone());
            let mut source = StoreSource::new(store, Cid::default(), data.len() as u64, runtime.handle().clone());
            let (source, head) = std::thread::spawn(move || {
                let mut head = [0u8; 16];
                source.read_exact(&mut head).unwrap();
                (source, head)
            })
            .join()
            .unwrap();
            assert_eq!(&head[..], &data[..16]);
            // The next window's read starts while the first plays, on a slow store only.
            let deadline = Instant::now() + Duration::from_secs(2);
            while reads.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                reads.load(std::sync::atomic::Ordering::SeqCst),
                if ahead { 2 } else { 1 },
                "{delay:?}"
            );
            // Either way the bytes are the file's, and a window read ahead is not read again.
            let mut source = source;
            let all = std::thread::spawn(move || {
                let mut rest = Vec::new();
                source.read_to_end(&mut rest).unwrap();
                rest
            })
            .join()
            .unwrap();
            assert_eq!(all, &data[16..]);
            assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
        }
    }

    /// A store whose range reads give `failures` in turn (None: the bytes asked for).
    fn flaky_store(data: Vec<u8>, failures: Vec<Option<crate::Error>>) -> Arc<dyn ContentService> {
        let mut store = crate::content::service::MockContentService::new();
        let failures = std::sync::Mutex::new(std::collections::VecDeque::from(failures));
        store.expect_read().returning(move |_, range| {
            // The source reads its next window ahead itself once reads are slow.
            assert!(!range.reads_ahead(), "a window is asked for alone");
            if let Some(Some(error)) = failures.lock().unwrap().pop_front() {
                return Err(error);
            }
            let (start, end) = range.clamp(&Cid::default(), data.len() as u64).unwrap();
            let (start, end) = (start as usize, end as usize);
            let slice = Bytes::copy_from_slice(&data[start..end]);
            Ok(Box::pin(futures::stream::iter([Ok(slice)])))
        });
        Arc::new(store)
    }

    /// Whether the first read of a file in `store` failed, and how many range reads it made.
    fn first_read(store: Arc<dyn ContentService>, runtime: &tokio::runtime::Runtime) -> (bool, u64) {
        let mut source = StoreSource::new(store, Cid::default(), 600_000, runtime.handle().clone());
        std::thread::spawn(move || (source.read(&mut [0u8; 16]).is_err(), source.reads))
            .join()
            .unwrap()
    }

    #[test]
    fn a_range_read_that_fails_for_a_passing_reason_is_made_again() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let cid = Cid::default();
        let store = flaky_store(
            data.clone(),
            vec![
                None,
                Some(crate::Error::Store("Too many open files".into())),
                Some(crate::Error::Store("timed out".into())),
            ],
        );
        let mut source = StoreSource::new(store, cid, data.len() as u64, runtime.handle().clone());
        let (read, reads) = std::thread::spawn(move || {
            let mut all = Vec::new();
            source.read_to_end(&mut all).map(|_| (all, source.reads))
        })
        .join()
        .unwrap()
        .expect("two failures in a row are ridden out");
        assert_eq!(read, data);
        assert_eq!(reads, 5, "three windows, the second read three times");

        // What the content says is not asked again; nor a store that keeps failing forever.
        let missing = flaky_store(data.clone(), vec![Some(crate::Error::NotFound(cid))]);
        let reads = first_read(missing, &runtime);
        assert_eq!(reads, (true, 1));
        let broken = flaky_store(
            data.clone(),
            (0..10).map(|_| Some(crate::Error::Store("disk gone".into()))).collect(),
        );
        let reads = first_read(broken, &runtime);
        assert_eq!(reads, (true, 4), "one read and three more attempts");

        // A read that failed slowly (a remote timeout) is not made again.
        let mut slow = crate::content::service::MockContentService::new();
        slow.expect_read().times(1).returning(|_, _| {
            std::thread::sleep(RETRY_BUDGET);
            Err(crate::Error::Store("timed out".into()))
        });
        let reads = first_read(Arc::new(slow), &runtime);
        assert_eq!(reads, (true, 1));
    }
}
