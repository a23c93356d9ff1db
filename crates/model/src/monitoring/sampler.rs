//! Once per interval: a snapshot of the live counters and the process, stored, published as
//! `system_metrics`, and given to each series' detector; what a detector flags is stored and
//! published as `system_warning`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::history::{Anomaly, Metric, MetricsHistory, Sample};
use super::live::{LiveStats, Totals};
use crate::anomaly::{Detector, DetectorKind, SeriesHint};
use crate::clock::now_ms;
use crate::content::StoreCounters;
use crate::notifications::{Event, Notifier, emit};
use crate::stream_records::StreamType;

/// The process' own usage, read from the operating system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessUsage {
    /// User and system CPU time since the process started.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads [`ProcessUsage`]; `None` where the platform does not tell.
pub trait ProcessProbe: Send + Sync {
    fn usage(&self) -> Option<ProcessUsage>;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    pub interval: Duration,
    /// Samples older than this are pruned.
    pub retention: Duration,
    pub detector: DetectorKind,
    /// Samples a detector learns from before it may alert.
    pub probation: usize,
    /// After an alert on a series, its next alerts wait this many samples.
    pub cooldown: u32,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            retention: Duration::from_secs(48 * 3600),
            detector: DetectorKind::Contextual,
            probation: 60,
            cooldown: 30,
        }
    }
}

/// One series' detector and its alerting state.
pub struct SeriesWatch {
    detector: Box<dyn Detector>,
    threshold: f64,
    probation: usize,
    cooldown: u32,
    seen: usize,
    quiet_for: u32,
    /// How far each recent value lay outside the expected range (see [`excess`]).
    recent_excess: VecDeque<f64>,
}

/// A value at least this many range widths outside the expected range, and at least
/// [`ESCALATION_FACTOR`] times further out than any recent value, always alerts: a detector that
/// quantises values sees everything past its range as one level, so after a small excursion it
/// could not tell a far larger one from a repeat.
const ESCALATION_MIN_EXCESS: f64 = 1.0;
const ESCALATION_FACTOR: f64 = 2.0;

/// How far `value` lies outside `(low, high)`, in widths of that range; 0 inside it.
fn excess(value: f64, (low, high): (f64, f64)) -> f64 {
    let width = (high - low).max(f64::MIN_POSITIVE);
    if value > high {
        (value - high) / width
    } else if value < low {
        (low - value) / width
    } else {
        0.0
    }
}

impl SeriesWatch {
    pub fn new(kind: DetectorKind, probation: usize, cooldown: u32) -> Self {
        Self {
            detector: kind.build(SeriesHint {
                range: None,
                probation,
                rests_after_alert: false,
            }),
            threshold: kind.alert_threshold(),
            probation,
            cooldown,
            seen: 0,
            quiet_for: 0,
            recent_excess: VecDeque::new(),
        }
    }

    /// Scores `value`; `Some((score, expected range))` when it is an alert.
    pub fn observe(&mut self, value: f64) -> Option<(f64, (f64, f64))> {
        let expected = self.detector.expected_range();
        let score = self.detector.score(value);
        if !value.is_finite() {
            return None;
        }
        self.seen += 1;
        self.quiet_for = self.quiet_for.saturating_sub(1);
        let excess = expected.map_or(0.0, |range| excess(value, range));
        let recent_peak = self.recent_excess.iter().copied().fold(0.0, f64::max);
        self.recent_excess.push_back(excess);
        if self.recent_excess.len() > self.probation.max(1) {
            self.recent_excess.pop_front();
        }
        if self.seen <= self.probation {
            return None;
        }
        let escalates = excess >= ESCALATION_MIN_EXCESS && excess >= ESCALATION_FACTOR * recent_peak;
        // The cooldown quiets repeated alerts while a series settles into a new pattern (a fault
        // that lasts raises one alert, not one a sample); an escalation still alerts.
        let alerts = escalates || (score >= self.threshold && self.quiet_for == 0);
        if !alerts {
            return None;
        }
        self.quiet_for = self.cooldown;
        Some((score, expected.unwrap_or((value, value))))
    }
}

/// The sampling loop's state.
pub struct Sampler {
    live: Arc<LiveStats>,
    probe: Arc<dyn ProcessProbe>,
    history: Arc<dyn MetricsHistory>,
    notifier: Arc<dyn Notifier>,
    config: SamplerConfig,
    watches: Vec<(Metric, SeriesWatch)>,
    last: Option<(Instant, Totals, Option<ProcessUsage>)>,
    anomalies_raised: Arc<AtomicU64>,
    /// What the block store served, for the remote-content series.
    store: Option<(Arc<StoreCounters>, StoreReads)>,
}

/// The block-read counters at the previous snapshot.
#[derive(Clone, Copy, Default)]
struct StoreReads {
    local: u64,
    remote: u64,
    remote_bytes: u64,
}

impl StoreReads {
    fn of(counters: &StoreCounters) -> Self {
        Self {
            local: counters.blocks_read.load(Ordering::Relaxed) + counters.cache_hits.load(Ordering::Relaxed),
            remote: counters.remote_blocks.load(Ordering::Relaxed),
            remote_bytes: counters.remote_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Sampler {
    pub fn new(
        live: Arc<LiveStats>,
        probe: Arc<dyn ProcessProbe>,
        history: Arc<dyn MetricsHistory>,
        notifier: Arc<dyn Notifier>,
        config: SamplerConfig,
    ) -> Self {
        let watches = Metric::ALL
            .iter()
            .map(|&metric| {
                (
                    metric,
                    SeriesWatch::new(config.detector, config.probation, config.cooldown),
                )
            })
            .collect();
        Self {
            live,
            probe,
            history,
            notifier,
            config,
            watches,
            last: None,
            anomalies_raised: Arc::new(AtomicU64::new(0)),
            store: None,
        }
    }

    /// Samples the remote-content series from what the block store served.
    pub fn with_store_counters(mut self, counters: Arc<StoreCounters>) -> Self {
        let now = StoreReads::of(&counters);
        self.store = Some((counters, now));
        self
    }

    /// Counts anomalies raised, for `/metrics`.
    pub fn anomalies_raised(&self) -> Arc<AtomicU64> {
        self.anomalies_raised.clone()
    }

    /// The snapshot since the previous call (rates are per second over the time between calls).
    pub fn snapshot(&mut self, at_ms: i64) -> Sample {
        let now = Instant::now();
        let totals = self.live.totals();
        let usage = self.probe.usage();
        // No request in the interval means no latency to report, not a latency of 0.
        let latency_p95 = self.live.take_latency_p95();
        let (elapsed, previous, previous_usage) = match self.last.replace((now, totals, usage)) {
            Some((then, totals, usage)) => (now.duration_since(then).as_secs_f64().max(1e-3), totals, usage),
            None => (self.config.interval.as_secs_f64(), totals, usage),
        };
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / elapsed;
        let requests = totals.requests.saturating_sub(previous.requests);
        let failures = totals.failures.saturating_sub(previous.failures);
        let error_rate = if requests > 0 {
            (failures as f64 / requests as f64).min(1.0)
        } else {
            0.0
        };
        let cpu = match (usage, previous_usage) {
            (Some(now), Some(then)) => Some((now.cpu_seconds - then.cpu_seconds).max(0.0) / elapsed * 100.0),
            _ => None,
        };
        let active_total: i64 = totals.active.iter().sum();
        let mut values = vec![
            (Metric::ThroughputIn, rate(totals.bytes_in, previous.bytes_in)),
            (Metric::ThroughputOut, rate(totals.bytes_out, previous.bytes_out)),
            (Metric::ActiveStreams, active_total as f64),
            (Metric::ActiveHttp, totals.active(StreamType::Http) as f64),
            (Metric::ActiveWebsocket, totals.active(StreamType::Websocket) as f64),
            (Metric::ActiveSse, totals.active(StreamType::Sse) as f64),
            (Metric::ActiveWebrtc, totals.active(StreamType::Webrtc) as f64),
            (Metric::Viewers, totals.viewers as f64),
            (Metric::UnderflowRate, rate(totals.underflows, previous.underflows)),
            (Metric::ErrorRate, error_rate),
            (Metric::RequestRate, rate(totals.requests, previous.requests)),
        ];
        if let Some(latency) = latency_p95 {
            values.push((Metric::LatencyP95, latency));
        }
        if let Some(cpu) = cpu {
            values.push((Metric::Cpu, cpu));
        }
        if let Some(usage) = usage {
            values.push((Metric::Rss, usage.rss_bytes as f64));
        }
        if let Some((counters, previous)) = &mut self.store {
            let now = StoreReads::of(counters);
            values.push((Metric::RemoteBytes, rate(now.remote_bytes, previous.remote_bytes)));
            let local = now.local.saturating_sub(previous.local);
            let remote = now.remote.saturating_sub(previous.remote);
            // No block read in the interval means no ratio to report, not a ratio of 0.
            if local + remote > 0 {
                values.push((Metric::LocalHitRatio, local as f64 / (local + remote) as f64));
            }
            *previous = now;
        }
        Sample { at_ms, values }
    }

    /// The anomalies in `sample`, one per series at most.
    pub fn detect(&mut self, sample: &Sample) -> Vec<Anomaly> {
        let detector = self.config.detector.name();
        self.watches
            .iter_mut()
            .filter_map(|(metric, watch)| {
                let value = sample.get(*metric)?;
                let (score, (low, high)) = watch.observe(value)?;
                Some(Anomaly {
                    at_ms: sample.at_ms,
                    metric: metric.as_str().to_owned(),
                    value,
                    expected_low: low,
                    expected_high: high,
                    score,
                    detector: detector.to_owned(),
                })
            })
            .collect()
    }

    /// One round: sample, store, publish, detect.
    pub async fn tick(&mut self) -> (Sample, Vec<Anomaly>) {
        let sample = self.snapshot(now_ms());
        if let Err(error) = self.history.store(&sample).await {
            tracing::warn!(%error, "storing a metrics sample failed");
        }
        let values = sample
            .values
            .iter()
            .map(|(metric, value)| (metric.as_str().to_owned(), json!(value)))
            .collect();
        emit(
            self.notifier.as_ref(),
            Event::SystemMetrics {
                values,
                at_ms: sample.at_ms,
            },
        );
        let anomalies = self.detect(&sample);
        for anomaly in &anomalies {
            self.anomalies_raised.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                metric = anomaly.metric,
                value = anomaly.value,
                score = anomaly.score,
                "anomaly"
            );
            if let Err(error) = self.history.store_anomaly(anomaly).await {
                tracing::warn!(%error, "storing an anomaly failed");
            }
            emit(
                self.notifier.as_ref(),
                Event::Anomaly {
                    metric: anomaly.metric.clone(),
                    value: anomaly.value,
                    expected_range: [anomaly.expected_low, anomaly.expected_high],
                    score: anomaly.score,
                    detector: anomaly.detector.clone(),
                    at_ms: anomaly.at_ms,
                },
            );
        }
        (sample, anomalies)
    }

    /// Samples every interval until the runtime stops; prunes old samples every few minutes.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.config.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_prune = Instant::now();
            loop {
                ticker.tick().await;
                self.tick().await;
                if last_prune.elapsed() >= Duration::from_secs(300) {
                    last_prune = Instant::now();
                    let before = now_ms() - self.config.retention.as_millis() as i64;
                    match self.history.prune(before).await {
                        Ok(n) if n > 0 => tracing::debug!(pruned = n, "metrics history pruned"),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "pruning the metrics history failed"),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::MemoryMetricsHistory;
    use crate::notifications::{MemoryNotificationRepository, NotificationHub, NotificationType};
    use crate::stream_records::Direction;

    struct FixedProbe;

    impl ProcessProbe for FixedProbe {
        fn usage(&self) -> Option<ProcessUsage> {
            Some(ProcessUsage {
                cpu_seconds: 1.0,
                rss_bytes: 42 << 20,
            })
        }
    }

    fn sampler(live: Arc<LiveStats>, history: Arc<MemoryMetricsHistory>) -> (Sampler, Arc<NotificationHub>) {
        let hub = Arc::new(NotificationHub::start(
            Arc::new(MemoryNotificationRepository::default()),
            100,
        ));
        let config = SamplerConfig {
            probation: 60,
            cooldown: 5,
            ..SamplerConfig::default()
        };
        (
            Sampler::new(live, Arc::new(FixedProbe), history, hub.clone(), config),
            hub,
        )
    }

    #[test]
    fn an_alert_does_not_hide_a_far_larger_deviation_soon_after() {
        let mut watch = SeriesWatch::new(DetectorKind::Contextual, 60, 30);
        for i in 0..120 {
            assert_eq!(watch.observe(0.001 + (i % 3) as f64 * 1e-4), None, "sample {i}");
        }
        let first = watch.observe(0.02);
        assert!(first.is_some(), "a spike beyond the ordinary alerts");
        for i in 0..3 {
            watch.observe(0.001 + (i % 3) as f64 * 1e-4);
        }
        let (_, (_, high)) = watch
            .observe(1.5)
            .expect("a far larger spike alerts within the cooldown");
        assert!(high < 0.01);
        // The same level again is no escalation.
        assert_eq!(watch.observe(1.5), None);
        // Back to ordinary values: the cooldown holds repeated alerts back.
        for i in 0..5 {
            assert_eq!(watch.observe(0.001 + (i % 3) as f64 * 1e-4), None, "sample {i}");
        }
    }

    #[tokio::test]
    async fn a_snapshot_holds_rates_and_gauges() {
        let live = Arc::new(LiveStats::default());
        let history = Arc::new(MemoryMetricsHistory::default());
        let (mut sampler, _hub) = sampler(live.clone(), history.clone());
        sampler.snapshot(0);
        let stream = live.open_stream("bafy".into(), StreamType::Sse, Direction::Outbound, 0);
        stream.count(4096);
        live.request(0.002, false, true);
        live.request(0.002, true, true);
        let sample = sampler.snapshot(1000);
        assert!(sample.get(Metric::ThroughputOut).unwrap() > 0.0);
        assert_eq!(sample.get(Metric::ActiveSse), Some(1.0));
        assert_eq!(sample.get(Metric::Viewers), Some(1.0));
        assert_eq!(sample.get(Metric::ErrorRate), Some(0.5));
        assert!(sample.get(Metric::LatencyP95).unwrap() >= 0.002);
        assert_eq!(sample.get(Metric::Rss), Some((42 << 20) as f64));
        assert_eq!(sample.get(Metric::Cpu), Some(0.0));
    }

    #[tokio::test]
    async fn a_spike_after_a_steady_stretch_is_stored_and_published() {
        let live = Arc::new(LiveStats::default());
        let history = Arc::new(MemoryMetricsHistory::default());
        let (mut sampler, hub) = sampler(live.clone(), history.clone());
        let mut connection = hub.connect(1000);
        hub.subscribe(connection.id, &[NotificationType::SystemWarning], None);
        let mut raised = 0;
        for i in 0..120 {
            live.request(0.001 + (i % 3) as f64 * 1e-4, false, true);
            let (_, anomalies) = sampler.tick().await;
            // Rates here depend on how fast the loop runs; the latency series is the steady one.
            let latency: Vec<_> = anomalies.iter().filter(|a| a.metric == "latency_p95_seconds").collect();
            assert!(latency.is_empty(), "sample {i}: {latency:?}");
            raised += anomalies.len();
        }
        live.request(2.0, false, true);
        let (_, anomalies) = sampler.tick().await;
        let spike = anomalies
            .iter()
            .find(|a| a.metric == "latency_p95_seconds")
            .expect("the spike is flagged");
        assert!(spike.value >= 2.0 && spike.expected_high < 0.01, "{spike:?}");
        raised += anomalies.len();
        let stored = history.anomalies(0, 1000).await.unwrap();
        assert_eq!(stored.len(), raised);
        assert!(stored.iter().any(|a| a.metric == "latency_p95_seconds"));
        let mut warnings = 0;
        while let Ok(Some(delivered)) = tokio::time::timeout(Duration::from_millis(500), connection.recv()).await {
            assert_eq!(delivered.notification.kind, NotificationType::SystemWarning);
            warnings += 1;
        }
        assert_eq!(warnings, raised, "every anomaly is published");
        assert_eq!(sampler.anomalies_raised().load(Ordering::Relaxed), raised as u64);
    }

    #[tokio::test]
    async fn remote_reads_give_bytes_per_second_and_the_share_served_here() {
        let counters = Arc::new(StoreCounters::default());
        let (sampler, _hub) = sampler(
            Arc::new(LiveStats::default()),
            Arc::new(MemoryMetricsHistory::default()),
        );
        let mut sampler = sampler.with_store_counters(counters.clone());
        let first = sampler.snapshot(0);
        assert_eq!(first.get(Metric::RemoteBytes), Some(0.0));
        assert_eq!(first.get(Metric::LocalHitRatio), None, "no block read: no ratio");
        counters.blocks_read.fetch_add(2, Ordering::Relaxed);
        counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        counters.remote_blocks.fetch_add(1, Ordering::Relaxed);
        counters.remote_bytes.fetch_add(1 << 20, Ordering::Relaxed);
        let second = sampler.snapshot(1000);
        assert_eq!(second.get(Metric::LocalHitRatio), Some(0.75));
        assert!(second.get(Metric::RemoteBytes).unwrap() > 0.0);
    }
}
