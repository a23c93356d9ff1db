//! Sampled series and detected anomalies, and the port that stores them.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;

macro_rules! metrics {
    ($($variant:ident => $name:literal: $help:literal),* $(,)?) => {
        /// A sampled series.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric { $($variant),* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            pub fn describe(self) -> &'static str {
                match self { $(Self::$variant => $help),* }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)* _ => None }
            }
        }
    };
}
metrics! {
    ThroughputIn => "throughput_in_bytes_per_second": "Bytes received by streams, per second.",
    ThroughputOut => "throughput_out_bytes_per_second": "Bytes sent by streams, per second.",
    ActiveStreams => "active_streams": "Streams in progress.",
    ActiveHttp => "active_streams_http": "HTTP streams in progress.",
    ActiveWebsocket => "active_streams_websocket": "WebSocket streams in progress.",
    ActiveSse => "active_streams_sse": "SSE streams in progress.",
    ActiveWebrtc => "active_streams_webrtc": "WebRTC streams in progress.",
    Viewers => "viewers": "Outbound streams in progress (people or programs receiving content).",
    UnderflowRate => "underflow_rate": "Playback buffer underflows per second.",
    LatencyP95 => "latency_p95_seconds": "95th percentile of the time to the response head of reads (GET, HEAD) in the interval.",
    ErrorRate => "error_rate": "Share of requests and streams that failed on the server's side in the interval.",
    RequestRate => "request_rate": "HTTP requests per second.",
    Cpu => "cpu_percent": "Process CPU time as a percentage of one core.",
    Rss => "rss_bytes": "Resident memory of the process.",
    RemoteBytes => "remote_bytes_per_second": "Bytes of blocks fetched from upstream gateways (the store lacked them), per second.",
    LocalHitRatio => "local_hit_ratio": "Share of the block reads in the interval served here (memory or store), not fetched from an upstream.",
}

impl Metric {
    /// Whether the service's value is the sum of its instances' (amounts and rates) rather than
    /// their mean (ratios and percentiles).
    pub fn adds_up(self) -> bool {
        !matches!(self, Metric::LatencyP95 | Metric::ErrorRate | Metric::LocalHitRatio)
    }
}

/// Whose samples a query reads, where instances share a database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Instances {
    /// The instance answering.
    #[default]
    This,
    /// One instance, by name.
    Named(String),
    /// The whole service: in each bucket, the instances' means added up (or averaged, for the
    /// series that do not add up, see [`Metric::adds_up`]), and their extremes the same way.
    All,
}

/// One snapshot of every series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub values: Vec<(Metric, f64)>,
}

impl Sample {
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v)
    }
}

/// A value a detector found out of the ordinary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub at_ms: i64,
    pub metric: String,
    pub value: f64,
    pub expected_low: f64,
    pub expected_high: f64,
    pub score: f64,
    pub detector: String,
}

/// At most this many points come back from one query; longer ranges are averaged into wider steps.
pub const MAX_POINTS: u64 = 2000;

/// A range of one series, bucketed into steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesQuery {
    pub metric: Metric,
    pub since_ms: i64,
    pub until_ms: i64,
    pub step_ms: i64,
}

impl SeriesQuery {
    /// The step actually used: the one asked for, widened so the range fits in [`MAX_POINTS`].
    pub fn bounded(metric: Metric, since_ms: i64, until_ms: i64, step_ms: Option<i64>) -> Self {
        let span = (until_ms - since_ms).max(1);
        let least = (span + MAX_POINTS as i64 - 1) / MAX_POINTS as i64;
        let step_ms = step_ms.unwrap_or(1000).max(least).max(1);
        Self {
            metric,
            since_ms,
            until_ms,
            step_ms,
        }
    }
}

/// One bucket of a series: the mean of its samples, and their extremes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket, in milliseconds since the epoch.
    pub t: i64,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

/// Where samples and anomalies are kept.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MetricsHistory: Send + Sync {
    async fn store(&self, sample: &Sample) -> Result<()>;
    async fn query(&self, query: SeriesQuery) -> Result<Vec<SeriesPoint>>;
    /// The series of other instances, or of the whole service. A store of one instance has its
    /// own samples only: they are the whole service, and no other instance has any.
    async fn query_instances(&self, query: SeriesQuery, instances: Instances) -> Result<Vec<SeriesPoint>> {
        match instances {
            Instances::This | Instances::All => self.query(query).await,
            Instances::Named(_) => Ok(Vec::new()),
        }
    }
    /// The names of the instances with samples (none for a store of one instance).
    async fn instances(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Drops samples older than `before_ms`; returns how many went.
    async fn prune(&self, before_ms: i64) -> Result<u64>;
    async fn store_anomaly(&self, anomaly: &Anomaly) -> Result<()>;
    /// The newest anomalies first.
    async fn anomalies(&self, since_ms: i64, limit: u32) -> Result<Vec<Anomaly>>;
}

/// Buckets `(at_ms, value)` rows the way a `GROUP BY (at_ms - since) / step` does.
pub fn bucket(rows: impl IntoIterator<Item = (i64, f64)>, query: &SeriesQuery) -> Vec<SeriesPoint> {
    let mut points: Vec<(SeriesPoint, u32)> = Vec::new();
    for (at, value) in rows {
        if at < query.since_ms || at >= query.until_ms {
            continue;
        }
        let t = query.since_ms + (at - query.since_ms) / query.step_ms * query.step_ms;
        match points.last_mut() {
            Some((point, n)) if point.t == t => {
                point.value += value;
                point.min = point.min.min(value);
                point.max = point.max.max(value);
                *n += 1;
            }
            _ => points.push((
                SeriesPoint {
                    t,
                    value,
                    min: value,
                    max: value,
                },
                1,
            )),
        }
    }
    points
        .into_iter()
        .map(|(mut point, n)| {
            point.value /= n as f64;
            point
        })
        .collect()
}

/// Samples and anomalies in memory, for tests and runs without a database.
#[derive(Default)]
pub struct MemoryMetricsHistory {
    samples: Mutex<Vec<Sample>>,
    anomalies: Mutex<Vec<Anomaly>>,
}

#[async_trait]
impl MetricsHistory for MemoryMetricsHistory {
    async fn store(&self, sample: &Sample) -> Result<()> {
        self.samples.lock().expect("not poisoned").push(sample.clone());
        Ok(())
    }

    async fn query(&self, query: SeriesQuery) -> Result<Vec<SeriesPoint>> {
        let samples = self.samples.lock().expect("not poisoned");
        let rows = samples.iter().filter_map(|s| s.get(query.metric).map(|v| (s.at_ms, v)));
        Ok(bucket(rows, &query))
    }

    async fn prune(&self, before_ms: i64) -> Result<u64> {
        let mut samples = self.samples.lock().expect("not poisoned");
        let before = samples.len();
        samples.retain(|s| s.at_ms >= before_ms);
        Ok((before - samples.len()) as u64)
    }

    async fn store_anomaly(&self, anomaly: &Anomaly) -> Result<()> {
        self.anomalies.lock().expect("not poisoned").push(anomaly.clone());
        Ok(())
    }

    async fn anomalies(&self, since_ms: i64, limit: u32) -> Result<Vec<Anomaly>> {
        let anomalies = self.anomalies.lock().expect("not poisoned");
        Ok(anomalies
            .iter()
            .rev()
            .filter(|a| a.at_ms >= since_ms)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ranges_are_widened_to_fit_the_point_budget() {
        let day = 86_400_000;
        let query = SeriesQuery::bounded(Metric::Cpu, 0, day, Some(1000));
        assert_eq!(query.step_ms, (day + MAX_POINTS as i64 - 1) / MAX_POINTS as i64);
        assert_eq!(SeriesQuery::bounded(Metric::Cpu, 0, 60_000, None).step_ms, 1000);
    }

    #[test]
    fn buckets_average_and_keep_extremes() {
        let query = SeriesQuery::bounded(Metric::Cpu, 1000, 5000, Some(2000));
        let points = bucket([(500, 9.0), (1000, 1.0), (1500, 3.0), (3100, 5.0), (5000, 9.0)], &query);
        assert_eq!(
            points,
            vec![
                SeriesPoint {
                    t: 1000,
                    value: 2.0,
                    min: 1.0,
                    max: 3.0
                },
                SeriesPoint {
                    t: 3000,
                    value: 5.0,
                    min: 5.0,
                    max: 5.0
                },
            ]
        );
    }
}
