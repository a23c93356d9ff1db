//! Counters the faces update as they serve, read by the sampler each interval. Updating is a few
//! atomic adds; nothing here blocks a stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::stream_records::{Direction, StreamType};

const STREAM_TYPES: [StreamType; 4] = [
    StreamType::Http,
    StreamType::Websocket,
    StreamType::Sse,
    StreamType::Webrtc,
];

fn type_index(stream_type: StreamType) -> usize {
    STREAM_TYPES
        .iter()
        .position(|t| *t == stream_type)
        .expect("every type is listed")
}

/// Response times in logarithmic buckets (10% wide, from 10 µs): a p95 without keeping samples.
struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

const LATENCY_FLOOR: f64 = 1e-5;
const LATENCY_GROWTH: f64 = 1.1;
const LATENCY_BUCKETS: usize = 200;

impl LatencyHistogram {
    fn new() -> Self {
        Self {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, seconds: f64) {
        let index = if seconds <= LATENCY_FLOOR || !seconds.is_finite() {
            0
        } else {
            ((seconds / LATENCY_FLOOR).ln() / LATENCY_GROWTH.ln()).ceil() as usize
        };
        self.buckets[index.min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper edge of the bucket holding the quantile, and resets the counts.
    fn take_quantile(&self, quantile: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (quantile * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(LATENCY_FLOOR * LATENCY_GROWTH.powi(index as i32));
            }
        }
        None
    }
}

struct OpenStream {
    content: String,
    stream_type: StreamType,
    direction: Direction,
    started_at_ms: i64,
    started: Instant,
    bytes: Arc<AtomicU64>,
}

/// Counters of the whole server.
pub struct LiveStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active: [AtomicI64; 4],
    viewers: AtomicI64,
    requests: AtomicU64,
    failures: AtomicU64,
    underflows: AtomicU64,
    latency: LatencyHistogram,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, OpenStream>>,
}

/// Totals read by the sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub active: [i64; 4],
    pub viewers: i64,
    pub requests: u64,
    pub failures: u64,
    pub underflows: u64,
}

impl Totals {
    pub fn active(&self, stream_type: StreamType) -> i64 {
        self.active[type_index(stream_type)]
    }
}

/// Streamed content grouped by what is streamed and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActiveContent {
    /// The CID or content path being streamed.
    pub cid: String,
    pub stream_type: String,
    /// Bits per second over the open streams' lifetimes, summed.
    pub bitrate: f64,
    pub viewers: u64,
    pub started_at_ms: i64,
}

impl Default for LiveStats {
    fn default() -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            active: Default::default(),
            viewers: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            underflows: AtomicU64::new(0),
            latency: LatencyHistogram::new(),
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl LiveStats {
    /// A stream began; the handle counts its bytes and ends it when dropped.
    pub fn open_stream(
        self: &Arc<Self>,
        content: String,
        stream_type: StreamType,
        direction: Direction,
        started_at_ms: i64,
    ) -> LiveStream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        self.active[type_index(stream_type)].fetch_add(1, Ordering::Relaxed);
        if direction == Direction::Outbound {
            self.viewers.fetch_add(1, Ordering::Relaxed);
        }
        self.open.lock().expect("not poisoned").insert(
            id,
            OpenStream {
                content,
                stream_type,
                direction,
                started_at_ms,
                started: Instant::now(),
                bytes: bytes.clone(),
            },
        );
        LiveStream {
            stats: self.clone(),
            id,
            direction,
            bytes,
            failed: false,
        }
    }

    /// An HTTP response head went out after `seconds`; `failed` for the server's errors (5xx).
    /// Only reads (`timed`) count towards the latency: an upload's head waits for its whole body.
    pub fn request(&self, seconds: f64, failed: bool, timed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if timed {
            self.latency.record(seconds);
        }
    }

    /// A playback buffer ran dry.
    pub fn underflow(&self) {
        self.underflows.fetch_add(1, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            active: std::array::from_fn(|i| self.active[i].load(Ordering::Relaxed)),
            viewers: self.viewers.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            underflows: self.underflows.load(Ordering::Relaxed),
        }
    }

    /// The p95 of response times since the last call, which starts a new interval.
    pub fn take_latency_p95(&self) -> Option<f64> {
        self.latency.take_quantile(0.95)
    }

    /// Open streams grouped by content and stream type, busiest first.
    pub fn active_content(&self) -> Vec<ActiveContent> {
        let open = self.open.lock().expect("not poisoned");
        let mut groups: HashMap<(&str, StreamType), ActiveContent> = HashMap::new();
        for stream in open.values().filter(|s| s.direction == Direction::Outbound) {
            let seconds = stream.started.elapsed().as_secs_f64().max(1e-3);
            let bitrate = stream.bytes.load(Ordering::Relaxed) as f64 * 8.0 / seconds;
            let group = groups
                .entry((stream.content.as_str(), stream.stream_type))
                .or_insert_with(|| ActiveContent {
                    cid: stream.content.clone(),
                    stream_type: stream.stream_type.as_str().to_owned(),
                    bitrate: 0.0,
                    viewers: 0,
                    started_at_ms: stream.started_at_ms,
                });
            group.bitrate += bitrate;
            group.viewers += 1;
            group.started_at_ms = group.started_at_ms.min(stream.started_at_ms);
        }
        let mut groups: Vec<ActiveContent> = groups.into_values().collect();
        groups.sort_by(|a, b| b.viewers.cmp(&a.viewers).then(a.cid.cmp(&b.cid)));
        groups
    }
}

/// One open stream; dropping it closes it.
pub struct LiveStream {
    stats: Arc<LiveStats>,
    id: u64,
    direction: Direction,
    bytes: Arc<AtomicU64>,
    failed: bool,
}

impl LiveStream {
    pub fn count(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let total = match self.direction {
            Direction::Inbound => &self.stats.bytes_in,
            Direction::Outbound => &self.stats.bytes_out,
        };
        total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The stream failed on the server's side; counted once, when it closes.
    pub fn fail(&mut self) {
        self.failed = true;
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        let removed = self.stats.open.lock().expect("not poisoned").remove(&self.id);
        if let Some(stream) = removed {
            self.stats.active[type_index(stream.stream_type)].fetch_sub(1, Ordering::Relaxed);
            if stream.direction == Direction::Outbound {
                self.stats.viewers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.failed {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_count_while_open_and_leave_when_dropped() {
        let stats = Arc::new(LiveStats::default());
        let a = stats.open_stream("bafyA".into(), StreamType::Http, Direction::Outbound, 5);
        let b = stats.open_stream("bafyA".into(), StreamType::Http, Direction::Outbound, 3);
        let mut up = stats.open_stream("upload".into(), StreamType::Websocket, Direction::Inbound, 4);
        a.count(1000);
        up.count(10);
        let totals = stats.totals();
        assert_eq!((totals.bytes_out, totals.bytes_in, totals.viewers), (1000, 10, 2));
        assert_eq!(totals.active(StreamType::Http), 2);
        let active = stats.active_content();
        assert_eq!(active.len(), 1, "uploads are not viewers");
        assert_eq!((active[0].viewers, active[0].started_at_ms), (2, 3));
        assert!(active[0].bitrate > 0.0);
        up.fail();
        drop((a, b, up));
        let totals = stats.totals();
        assert_eq!(
            (totals.viewers, totals.active(StreamType::Http), totals.failures),
            (0, 0, 1)
        );
        assert!(stats.active_content().is_empty());
    }

    #[test]
    fn the_p95_comes_from_the_interval_and_resets() {
        let stats = LiveStats::default();
        assert_eq!(stats.take_latency_p95(), None);
        for _ in 0..95 {
            stats.request(0.001, false, true);
        }
        for _ in 0..5 {
            stats.request(0.5, true, true);
        }
        let p95 = stats.take_latency_p95().unwrap();
        assert!((0.001..0.0011).contains(&p95), "{p95}");
        stats.request(0.5, false, true);
        let p95 = stats.take_latency_p95().unwrap();
        assert!((0.5..0.56).contains(&p95), "{p95}");
        stats.request(30.0, false, false);
        assert_eq!(stats.take_latency_p95(), None, "an upload is not a read");
        assert_eq!(stats.totals().failures, 5);
    }
}
