//! Media bytes from the content store for the (blocking) demuxers: read by ranges on demand
//! (progressive loading: a demuxer touches only what it plays, so the first frame does not wait
//! for the whole file) or loaded whole first.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::TryStreamExt;
use tokio::runtime::Handle;

use crate::content::{ByteRange, ContentService};

/// Bytes fetched per range read.
const WINDOW: u64 = 256 * 1024;

/// A file in the store as `Read + Seek`. Must be used off the async runtime (in
/// `spawn_blocking`): each miss blocks on a range read.
pub struct StoreSource {
    content: Arc<dyn ContentService>,
    cid: Cid,
    size: u64,
    position: u64,
    window: (u64, Bytes),
    runtime: Handle,
    /// Range reads made, for the playback counters.
    pub reads: u64,
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
            reads: 0,
        }
    }

    /// The whole file, read once (playback without progressive loading).
    pub fn load_all(content: &Arc<dyn ContentService>, cid: &Cid, runtime: &Handle) -> std::io::Result<Bytes> {
        let chunks: Vec<Bytes> = runtime
            .block_on(async { content.read(cid, ByteRange::full()).await?.try_collect().await })
            .map_err(std::io::Error::other)?;
        Ok(chunks.concat().into())
    }

    fn fetch(&mut self, at: u64) -> std::io::Result<()> {
        let length = WINDOW.min(self.size - at);
        let (content, cid) = (self.content.clone(), self.cid);
        let chunks: Vec<Bytes> = self
            .runtime
            .block_on(async move {
                content
                    .read(&cid, ByteRange::new(at, Some(length)))
                    .await?
                    .try_collect()
                    .await
            })
            .map_err(std::io::Error::other)?;
        self.reads += 1;
        self.window = (at, chunks.concat().into());
        Ok(())
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
            (head, tail, source.reads)
        });
        let (head, tail, reads) = handle.join().unwrap();
        assert_eq!(&head[..], &data[..10]);
        assert_eq!(tail, &data[2_999_990..]);
        assert_eq!(reads, 2, "two windows, not the whole file");
        let all = std::thread::spawn(move || StoreSource::load_all(&node, &record.cid, runtime.handle()).unwrap())
            .join()
            .unwrap();
        assert_eq!(all.len(), data.len());
    }
}
