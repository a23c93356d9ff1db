//! Stream records on their way to storage: encoded as they end, on the thread that ran the stream,
//! and written together by a background task, so recording never waits on storage.
//!
//! Why encoded at once: a busy gateway ends tens of thousands of streams a second on its HTTP
//! workers. A record handed whole to the writer's thread is freed there, and glibc's allocator
//! takes the worker arena's lock for each of its strings (with both cores busy, that lock and its
//! wake-ups cost more than the row). Encoded where it ended, a record's strings are freed where they
//! were made, and what crosses threads is one buffer, used again for the next batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::stream_records::StreamRecord;

/// How long the first record of a batch waits for the others.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Stream records encoded for the repository: a JSON array of rows, each
/// `[stream_type, direction, path, bytes, chunks, chunk_size, duration_us, correlation_id, outcome,
/// started_at_ms]` (the counts as signed 64-bit integers, as the database keeps them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordBatch {
    /// The JSON text, closed (`[...]`) whenever a row is in.
    json: Vec<u8>,
    rows: usize,
}

impl RecordBatch {
    /// The records, encoded in order.
    pub fn of(records: &[StreamRecord]) -> Self {
        let mut batch = Self::default();
        records.iter().for_each(|record| batch.push(record));
        batch
    }

    pub fn push(&mut self, record: &StreamRecord) {
        let row = (
            record.stream_type.as_str(),
            record.direction.as_str(),
            record.path.as_str(),
            record.bytes as i64,
            record.chunks as i64,
            record.chunk_size as i64,
            record.duration.as_micros() as i64,
            record.correlation_id.as_str(),
            record.outcome.as_str(),
            record.started_at_ms,
        );
        match self.json.pop() {
            Some(_closing_bracket) => self.json.push(b','),
            None => self.json.push(b'['),
        }
        serde_json::to_writer(&mut self.json, &row).expect("a row of strings and integers encodes");
        self.json.push(b']');
        self.rows += 1;
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows as a JSON array (`[]` when empty).
    pub fn as_json(&self) -> &str {
        if self.rows == 0 {
            return "[]";
        }
        std::str::from_utf8(&self.json).expect("serde_json writes UTF-8")
    }

    /// Empties the batch, keeping its buffer for the next one.
    pub fn clear(&mut self) {
        self.json.clear();
        self.rows = 0;
    }
}

/// Records waiting to be written: every thread that ends streams pushes here, and a background
/// task takes them all at once.
pub struct RecordQueue {
    waiting: Arc<Mutex<RecordBatch>>,
    capacity: usize,
    /// Wakes the writer; holds one token, so a burst wakes it once.
    wake: mpsc::Sender<()>,
}

impl RecordQueue {
    /// Starts the writer on the current runtime: woken by a record, it waits [`FLUSH_EVERY`] for
    /// the others, then hands `write` everything waiting; `write` hands the batch back, and its
    /// buffer holds the batch after next. The writer ends once the queue is dropped, after writing
    /// what waited. At most `capacity` records wait.
    pub fn start<W, F>(capacity: usize, mut write: W) -> Self
    where
        W: FnMut(RecordBatch) -> F + Send + 'static,
        F: Future<Output = RecordBatch> + Send,
    {
        let waiting = Arc::new(Mutex::new(RecordBatch::default()));
        let (wake, mut woken) = mpsc::channel(1);
        let queued = waiting.clone();
        tokio::spawn(async move {
            let mut spare = RecordBatch::default();
            loop {
                let open = woken.recv().await.is_some();
                if open {
                    tokio::time::sleep(FLUSH_EVERY).await;
                }
                let batch = std::mem::replace(&mut *lock(&queued), spare);
                spare = if batch.is_empty() { batch } else { write(batch).await };
                spare.clear();
                if !open {
                    return;
                }
            }
        });
        Self {
            waiting,
            capacity,
            wake,
        }
    }

    /// Queues a record; false when `capacity` records wait already and it was dropped.
    pub fn push(&self, record: &StreamRecord) -> bool {
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= self.capacity {
            return false;
        }
        waiting.push(record);
        drop(waiting);
        // Full means the writer is already due: the send fails at once and nothing is lost.
        let _ = self.wake.try_send(());
        true
    }
}

fn lock(batch: &Mutex<RecordBatch>) -> std::sync::MutexGuard<'_, RecordBatch> {
    batch.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_records::{Direction, Outcome, StreamType};

    fn record(i: u64) -> StreamRecord {
        StreamRecord {
            stream_type: StreamType::Http,
            direction: Direction::Outbound,
            path: format!("/ipfs/Qm{i}"),
            bytes: i,
            chunks: 1,
            chunk_size: 0,
            duration: Duration::from_micros(1500),
            correlation_id: "c".into(),
            outcome: Outcome::Ok,
            started_at_ms: 7,
        }
    }

    /// The `bytes` of each record of each batch `RecordQueue` wrote for `records` pushed at once.
    async fn batches_for(records: u64, capacity: usize) -> Vec<Vec<u64>> {
        let (written, mut writes) = mpsc::unbounded_channel();
        let queue = RecordQueue::start(capacity, move |batch: RecordBatch| {
            let rows: Vec<serde_json::Value> = serde_json::from_str(batch.as_json()).unwrap();
            written
                .send(rows.iter().map(|row| row[3].as_u64().unwrap()).collect::<Vec<_>>())
                .unwrap();
            async move { batch }
        });
        for i in 0..records {
            queue.push(&record(i));
        }
        drop(queue);
        let mut batches = Vec::new();
        while let Some(batch) = writes.recv().await {
            batches.push(batch);
        }
        batches
    }

    #[tokio::test(start_paused = true)]
    async fn what_waits_together_is_written_together_in_order() {
        assert_eq!(batches_for(10, 64).await, vec![(0..10).collect::<Vec<_>>()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_what_comes_after() {
        assert_eq!(batches_for(100, 64).await, vec![(0..64).collect::<Vec<_>>()]);
    }

    #[tokio::test(start_paused = true)]
    async fn records_keep_coming_while_a_batch_is_written() {
        let (written, mut writes) = mpsc::unbounded_channel();
        let queue = RecordQueue::start(1000, move |batch: RecordBatch| {
            written.send(batch.len()).unwrap();
            async move {
                tokio::time::sleep(FLUSH_EVERY * 3).await;
                batch
            }
        });
        assert!(queue.push(&record(1)));
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        for i in 0..5 {
            assert!(queue.push(&record(i)));
        }
        drop(queue);
        assert_eq!(writes.recv().await, Some(1));
        assert_eq!(writes.recv().await, Some(5));
        assert_eq!(writes.recv().await, None);
    }

    #[test]
    fn a_batch_is_a_json_array_of_rows_whatever_its_text() {
        let mut odd = record(u64::MAX);
        odd.path = "/ipfs/\"quoted\"\\ ünï ✓\n".into();
        let batch = RecordBatch::of(&[record(1), odd.clone()]);
        assert_eq!(batch.len(), 2);
        let rows: serde_json::Value = serde_json::from_str(batch.as_json()).unwrap();
        assert_eq!(
            rows[0],
            serde_json::json!(["http", "outbound", "/ipfs/Qm1", 1, 1, 0, 1500, "c", "ok", 7])
        );
        assert_eq!(rows[1][2], odd.path.as_str());
        assert_eq!(rows[1][3], -1, "stored as the database's signed integer");
        let mut emptied = batch;
        emptied.clear();
        assert_eq!((emptied.as_json(), emptied.len()), ("[]", 0));
        assert_eq!(emptied, RecordBatch::default());
    }
}
