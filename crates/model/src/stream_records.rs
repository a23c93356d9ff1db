//! Streaming metrics: one record per streaming operation (HTTP, WebSocket, SSE, WebRTC; inbound or
//! outbound), written in batches by a background task so recording never slows a stream, and
//! summarised per `stream_{type}_{direction}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use crate::batch::RecordBatch;
use crate::batch::RecordQueue;
use crate::error::Result;

/// How a stream reached its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamType {
    Http,
    Websocket,
    Sse,
    Webrtc,
}

/// Which way the bytes went, from the server's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the server (uploads).
    Inbound,
    /// Out of the server (downloads).
    Outbound,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// The server failed (a missing or corrupted block, a store error).
    Error,
    /// The client went away first.
    Aborted,
}

macro_rules! names {
    ($t:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $t {
            /// Every value, in a stable order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)* _ => None }
            }
        }
    };
}
names!(StreamType { Http => "http", Websocket => "websocket", Sse => "sse", Webrtc => "webrtc" });
names!(Direction { Inbound => "inbound", Outbound => "outbound" });
names!(Outcome { Ok => "ok", Error => "error", Aborted => "aborted" });

/// One streaming operation.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    pub stream_type: StreamType,
    pub direction: Direction,
    /// The CID or content path streamed.
    pub path: String,
    pub bytes: u64,
    pub chunks: u64,
    /// The chunk size asked for (0 when the transport chose).
    pub chunk_size: u64,
    pub duration: Duration,
    /// Ties the record to the request that made it.
    pub correlation_id: String,
    pub outcome: Outcome,
    /// Milliseconds since the Unix epoch when the stream started.
    pub started_at_ms: i64,
}

impl StreamRecord {
    /// Bytes per second over the whole stream.
    pub fn throughput(&self) -> f64 {
        self.bytes as f64 / self.duration.as_secs_f64().max(1e-6)
    }

    /// `stream_{type}_{direction}`, the key of summaries.
    pub fn operation(&self) -> String {
        format!("stream_{}_{}", self.stream_type.as_str(), self.direction.as_str())
    }
}

/// Which records to return.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub stream_type: Option<StreamType>,
    pub limit: u64,
}

/// Where stream records are kept (SQLite in the persistence crate).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StreamRecordRepository: Send + Sync {
    /// Writes the records of a batch, in order.
    async fn save_batch(&self, records: &RecordBatch) -> Result<()>;

    /// Records matching `query`, newest first.
    async fn history(&self, query: &HistoryQuery) -> Result<Vec<StreamRecord>>;

    /// Deletes records that started before `older_than_ms`, and all but the newest `keep_newest`;
    /// returns how many went.
    async fn prune(&self, older_than_ms: i64, keep_newest: u64) -> Result<u64>;
}

/// How much of the stream log is kept: a busy gateway writes a record per request, so both an age
/// and a count bound it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_records: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(48 * 3600),
            max_records: 1_000_000,
        }
    }
}

/// How often the stream log is cut back to its retention.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// count, average, min, max, median, p95, p99 of a series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        // Nearest-rank percentiles.
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            count: values.len() as u64,
            avg: values.iter().sum::<f64>() / values.len() as f64,
            min: values[0],
            max: values[values.len() - 1],
            median: rank(0.5),
            p95: rank(0.95),
            p99: rank(0.99),
        }
    }
}

/// The summary of one `stream_{type}_{direction}`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSummary {
    pub operation: String,
    pub count: u64,
    pub total_bytes: u64,
    /// Seconds.
    pub duration: Distribution,
    /// Bytes per second.
    pub throughput: Distribution,
    /// Share of streams that ended in `error`.
    pub error_rate: f64,
    pub aborted: u64,
}

/// Summaries per operation over `records`.
pub fn summarize(records: &[StreamRecord]) -> Vec<StreamSummary> {
    let mut groups: std::collections::BTreeMap<String, Vec<&StreamRecord>> = Default::default();
    for record in records {
        groups.entry(record.operation()).or_default().push(record);
    }
    groups
        .into_iter()
        .map(|(operation, group)| {
            let errors = group.iter().filter(|r| r.outcome == Outcome::Error).count();
            StreamSummary {
                operation,
                count: group.len() as u64,
                total_bytes: group.iter().map(|r| r.bytes).sum(),
                duration: Distribution::of(group.iter().map(|r| r.duration.as_secs_f64()).collect()),
                throughput: Distribution::of(group.iter().map(|r| r.throughput()).collect()),
                error_rate: errors as f64 / group.len() as f64,
                aborted: group.iter().filter(|r| r.outcome == Outcome::Aborted).count() as u64,
            }
        })
        .collect()
}

/// Recording and reading stream metrics; the port the faces use.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StreamMetrics: Send + Sync {
    /// Queues a record for the next batch; never waits (a full queue drops the record and counts it).
    fn record(&self, record: &StreamRecord);

    /// Summaries over the most recent records (up to `window` of them).
    async fn summary(&self, window: u64) -> Result<Vec<StreamSummary>>;

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<StreamRecord>>;

    /// Records dropped because the queue was full.
    fn dropped(&self) -> u64;
}

/// Records waiting to be written, at most.
const QUEUE: usize = 16_384;

/// [`StreamMetrics`] writing to a repository in batches from a background task.
pub struct BatchedStreamMetrics {
    queue: RecordQueue,
    repository: Arc<dyn StreamRecordRepository>,
    dropped: AtomicU64,
}

impl BatchedStreamMetrics {
    /// Starts the writer task on the current runtime; it ends when the last handle is dropped,
    /// after writing what was queued. Every [`PRUNE_EVERY`] it cuts the log back to `retention`.
    pub fn start(repository: Arc<dyn StreamRecordRepository>, retention: Retention) -> Self {
        let writer = repository.clone();
        let mut last_prune: Option<std::time::Instant> = None;
        let queue = RecordQueue::start(QUEUE, move |batch: RecordBatch| {
            let writer = writer.clone();
            let prune = last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if prune {
                last_prune = Some(std::time::Instant::now());
            }
            async move {
                if let Err(e) = writer.save_batch(&batch).await {
                    tracing::warn!(error = %e, records = batch.len(), "stream metrics not written");
                }
                if prune {
                    let older_than_ms = crate::clock::now_ms().saturating_sub(retention.max_age.as_millis() as i64);
                    if let Err(e) = writer.prune(older_than_ms, retention.max_records).await {
                        tracing::warn!(error = %e, "stream metrics not pruned");
                    }
                }
                batch
            }
        });
        Self {
            queue,
            repository,
            dropped: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl StreamMetrics for BatchedStreamMetrics {
    fn record(&self, record: &StreamRecord) {
        if !self.queue.push(record) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn summary(&self, window: u64) -> Result<Vec<StreamSummary>> {
        let recent = self
            .repository
            .history(&HistoryQuery {
                limit: window,
                ..Default::default()
            })
            .await?;
        Ok(summarize(&recent))
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<StreamRecord>> {
        self.repository.history(query).await
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream_type: StreamType, bytes: u64, millis: u64, outcome: Outcome) -> StreamRecord {
        StreamRecord {
            stream_type,
            direction: Direction::Outbound,
            path: "/ipfs/x".into(),
            bytes,
            chunks: 1,
            chunk_size: 0,
            duration: Duration::from_millis(millis),
            correlation_id: "c".into(),
            outcome,
            started_at_ms: 0,
        }
    }

    #[test]
    fn distributions_use_nearest_rank_percentiles() {
        let d = Distribution::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (d.count, d.min, d.max, d.median, d.p95, d.p99),
            (100, 1.0, 100.0, 50.0, 95.0, 99.0)
        );
        assert_eq!(d.avg, 50.5);
        assert_eq!(
            Distribution::of(vec![f64::NAN, 2.0]).count,
            1,
            "non-finite values are left out"
        );
        assert_eq!(Distribution::of(vec![]), Distribution::default());
    }

    #[test]
    fn summaries_group_by_type_and_direction() {
        let records = vec![
            record(StreamType::Http, 1000, 1000, Outcome::Ok),
            record(StreamType::Http, 3000, 1000, Outcome::Error),
            record(StreamType::Websocket, 10, 10, Outcome::Aborted),
        ];
        let summaries = summarize(&records);
        assert_eq!(summaries.len(), 2);
        let http = &summaries[0];
        assert_eq!(http.operation, "stream_http_outbound");
        assert_eq!((http.count, http.total_bytes, http.error_rate), (2, 4000, 0.5));
        assert_eq!(http.throughput.max, 3000.0);
        assert_eq!(summaries[1].aborted, 1);
    }

    #[tokio::test]
    async fn records_are_written_in_batches_and_never_block() {
        let mut repository = MockStreamRecordRepository::new();
        let written = Arc::new(AtomicU64::new(0));
        let count = written.clone();
        repository.expect_save_batch().returning(move |batch| {
            count.fetch_add(batch.len() as u64, Ordering::SeqCst);
            Ok(())
        });
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_records: 500,
        };
        // Pruned after the first write, with the cut-off an hour back.
        repository
            .expect_prune()
            .withf(|older_than_ms, keep| {
                let hour_ago = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    - 3_600_000;
                (older_than_ms - hour_ago).abs() < 60_000 && *keep == 500
            })
            .times(1)
            .returning(|_, _| Ok(0));
        let metrics = BatchedStreamMetrics::start(Arc::new(repository), retention);
        for _ in 0..1000 {
            metrics.record(&record(StreamType::Sse, 1, 1, Outcome::Ok));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while written.load(Ordering::SeqCst) < 1000 {
            assert!(std::time::Instant::now() < deadline, "records were not written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.dropped(), 0);
    }
}
