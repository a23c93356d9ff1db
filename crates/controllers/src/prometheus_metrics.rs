//! Prometheus metrics at `GET /metrics`: HTTP requests by route and status with latency histograms,
//! streams and their bytes by type and direction, active streams, notification subscribers and
//! events. Names start with `ipfs_stream_`, counters end in `_total`, units are bytes and seconds;
//! labels stay bounded (route patterns, stream types, statuses), never a client or a CID.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use model::notifications::NotificationHub;
use model::stream_records::{Direction, Outcome, StreamType};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::AppState;
use crate::routes::RouteLabel;

/// The server's Prometheus registry and the instruments handlers update.
pub struct PrometheusMetrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    access_denied: IntCounterVec,
    rate_limited: IntCounterVec,
    /// Every stream's counters, resolved once: a stream updates them without hashing its labels.
    by_stream: Vec<StreamInstruments>,
}

const STREAM_TYPES: [StreamType; 4] = [
    StreamType::Http,
    StreamType::Websocket,
    StreamType::Sse,
    StreamType::Webrtc,
];
const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];
const OUTCOMES: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::Aborted];

/// The instruments of one stream type and direction.
struct StreamInstruments {
    active: IntGauge,
    bytes: IntCounter,
    /// By outcome, in the order of [`OUTCOMES`].
    ended: [IntCounter; 3],
}

fn stream_index(stream_type: StreamType, direction: Direction) -> usize {
    stream_type as usize * DIRECTIONS.len() + direction as usize
}

const NAMESPACE: &str = "ipfs_stream";

impl PrometheusMetrics {
    /// Instruments registered in a registry of their own, plus the hub's counters read at scrape.
    pub fn new(
        hub: Arc<NotificationHub>,
        anomalies_raised: Arc<AtomicU64>,
        store: Arc<model::content::StoreCounters>,
    ) -> Self {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let http_requests = IntCounterVec::new(
            opts(
                "http_requests_total",
                "HTTP requests answered, by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to the response head, by route pattern.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let access_denied = IntCounterVec::new(
            opts(
                "access_denied_total",
                "Requests refused by access control, by route pattern and reason (origin, missing, \
                 malformed, unknown, expired, revoked, insufficient_scope, ...).",
            ),
            &["route", "reason"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            opts(
                "rate_limited_total",
                "Requests refused with 429 by the rate limits, by route pattern.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let stream_bytes = IntCounterVec::new(
            opts("stream_bytes_total", "Bytes streamed, by stream type and direction."),
            &["stream_type", "direction"],
        )
        .expect("valid metric");
        let streams = IntCounterVec::new(
            opts("streams_total", "Streams ended, by stream type, direction and outcome."),
            &["stream_type", "direction", "outcome"],
        )
        .expect("valid metric");
        let active_streams = IntGaugeVec::new(
            opts("active_streams", "Streams in progress, by stream type and direction."),
            &["stream_type", "direction"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn Collector>,
            Box::new(http_duration.clone()),
            Box::new(access_denied.clone()),
            Box::new(rate_limited.clone()),
            Box::new(stream_bytes.clone()),
            Box::new(streams.clone()),
            Box::new(active_streams.clone()),
            Box::new(HubCollector::new(hub, anomalies_raised, store)),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        let by_stream = STREAM_TYPES
            .iter()
            .flat_map(|kind| DIRECTIONS.iter().map(move |way| (kind.as_str(), way.as_str())))
            .map(|(kind, way)| StreamInstruments {
                active: active_streams.with_label_values(&[kind, way]),
                bytes: stream_bytes.with_label_values(&[kind, way]),
                ended: OUTCOMES.map(|outcome| streams.with_label_values(&[kind, way, outcome.as_str()])),
            })
            .collect();
        Self {
            registry,
            http_requests,
            http_duration,
            access_denied,
            rate_limited,
            by_stream,
        }
    }

    /// A request access control refused.
    pub fn access_denied(&self, route: &str, reason: &str) {
        self.access_denied.with_label_values(&[route, reason]).inc();
    }

    /// A request the rate limits refused.
    pub fn rate_limited(&self, route: &str) {
        self.rate_limited.with_label_values(&[route]).inc();
    }

    pub fn stream_started(&self, stream_type: StreamType, direction: Direction) {
        self.by_stream[stream_index(stream_type, direction)].active.inc();
    }

    pub fn stream_ended(&self, stream_type: StreamType, direction: Direction, outcome: Outcome, bytes: u64) {
        let instruments = &self.by_stream[stream_index(stream_type, direction)];
        instruments.active.dec();
        instruments.bytes.inc_by(bytes);
        instruments.ended[outcome as usize].inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The hub's counters and the sampler's, read when Prometheus scrapes.
struct HubCollector {
    hub: Arc<NotificationHub>,
    anomalies_raised: Arc<AtomicU64>,
    store: Arc<model::content::StoreCounters>,
    descs: Vec<Desc>,
}

const HUB_METRICS: [(&str, &str, bool); 15] = [
    (
        "notification_subscribers",
        "Connections subscribed to live notifications.",
        false,
    ),
    ("notifications_published_total", "Notifications published.", true),
    (
        "notifications_sent_total",
        "Notifications delivered to subscribers.",
        true,
    ),
    (
        "notifications_relayed_total",
        "Notifications of other instances sharing the database, delivered here.",
        true,
    ),
    (
        "notification_subscribers_dropped_total",
        "Subscribers disconnected for not keeping up.",
        true,
    ),
    (
        "anomalies_raised_total",
        "Anomalies the detector raised on the sampled series.",
        true,
    ),
    (
        "store_blocks_read_total",
        "Blocks read from the block store (cache misses and verification passes).",
        true,
    ),
    ("store_read_bytes_total", "Bytes read from the block store.", true),
    (
        "store_cache_hits_total",
        "Blocks served from the cache of verified blocks.",
        true,
    ),
    (
        "store_verify_failures_total",
        "Stored blocks that did not hash to their CID (refused).",
        true,
    ),
    (
        "remote_blocks_total",
        "Blocks the store lacked, fetched from an upstream gateway and verified (cache misses).",
        true,
    ),
    (
        "remote_bytes_total",
        "Bytes of the blocks fetched from upstream gateways.",
        true,
    ),
    (
        "remote_failures_total",
        "Blocks the store lacked that no upstream gateway supplied.",
        true,
    ),
    (
        "remote_keep_failures_total",
        "Fetched blocks that could not be kept in the store (served all the same).",
        true,
    ),
    (
        "remote_cache_evicted_total",
        "Kept remote blocks deleted to stay within cache_max_bytes.",
        true,
    ),
];

impl HubCollector {
    fn new(
        hub: Arc<NotificationHub>,
        anomalies_raised: Arc<AtomicU64>,
        store: Arc<model::content::StoreCounters>,
    ) -> Self {
        let descs = HUB_METRICS
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    format!("{NAMESPACE}_{name}"),
                    (*help).to_owned(),
                    vec![],
                    Default::default(),
                )
                .expect("valid description")
            })
            .collect();
        Self {
            hub,
            anomalies_raised,
            store,
            descs,
        }
    }
}

impl Collector for HubCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = self.hub.metrics();
        let values = [
            m.active_connections,
            m.notifications_published,
            m.notifications_sent,
            m.notifications_relayed,
            m.slow_consumers_dropped,
            self.anomalies_raised.load(Ordering::Relaxed),
            self.store.blocks_read.load(Ordering::Relaxed),
            self.store.bytes_read.load(Ordering::Relaxed),
            self.store.cache_hits.load(Ordering::Relaxed),
            self.store.verify_failures.load(Ordering::Relaxed),
            self.store.remote_blocks.load(Ordering::Relaxed),
            self.store.remote_bytes.load(Ordering::Relaxed),
            self.store.remote_failures.load(Ordering::Relaxed),
            self.store.remote_keep_failures.load(Ordering::Relaxed),
            self.store.evicted_blocks.load(Ordering::Relaxed),
        ];
        HUB_METRICS
            .iter()
            .zip(values)
            .map(|((name, help, counter), value)| {
                let name = format!("{NAMESPACE}_{name}");
                if *counter {
                    let metric = prometheus::IntCounter::with_opts(Opts::new(name, *help)).expect("valid metric");
                    metric.inc_by(value);
                    metric.collect().remove(0)
                } else {
                    let metric = prometheus::IntGauge::with_opts(Opts::new(name, *help)).expect("valid metric");
                    metric.set(value as i64);
                    metric.collect().remove(0)
                }
            })
            .collect()
    }
}

/// Middleware counting every request by route pattern, method and status, and timing it.
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let read = matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    );
    let started = Instant::now();
    let response = next.call(req).await?;
    // The matched resource left its label in the request's data (see `routes::register`).
    let route = response
        .request()
        .app_data::<RouteLabel>()
        .map_or("unmatched", |label| label.0);
    if let Some(state) = state {
        let seconds = started.elapsed().as_secs_f64();
        state.live.request(seconds, response.status().is_server_error(), read);
        let prometheus_metrics = &state.prometheus_metrics;
        let status = response.status();
        prometheus_metrics
            .http_requests
            .with_label_values(&[route, method.as_str(), status.as_str()])
            .inc();
        prometheus_metrics
            .http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }
    Ok(response)
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.prometheus_metrics.render();
    text.push_str(&render_connections(state.connections.counts()));
    if let Some(remote) = &state.upstreams {
        text.push_str(&render_upstreams(&remote.report()));
    }
    if let Some(budget) = &state.cache_budget {
        text.push_str(&render_cache(budget.usage()));
    }
    if let Some(webrtc) = &state.webrtc {
        text.push_str(&render_webrtc(&webrtc.totals().await));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Families read at scrape time, in the text exposition format (a registry of their own, so
/// their names are checked unique among themselves).
fn text_of(collectors: Vec<Box<dyn Collector>>) -> String {
    let registry = Registry::new();
    for collector in collectors {
        registry.register(collector).expect("metric names are unique");
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// The connection caps' families, read from the gate at scrape time.
fn render_connections(counts: crate::connections::ConnectionCounts) -> String {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let open = IntGauge::with_opts(opts(
        "http_connections_open",
        "HTTP connections open (WebSockets included).",
    ))
    .expect("valid metric");
    open.set(i64::from(counts.open));
    let refused = IntCounterVec::new(
        opts(
            "http_connections_refused_total",
            "Connections closed on arrival by a cap: per_address (max_connections_per_ip) or total (max_connections).",
        ),
        &["cap"],
    )
    .expect("valid metric");
    refused
        .with_label_values(&["per_address"])
        .inc_by(counts.refused_per_address);
    refused.with_label_values(&["total"]).inc_by(counts.refused_total);
    text_of(vec![Box::new(open), Box::new(refused)])
}

/// What the store keeps of remote content, against its budget.
fn render_cache(usage: model::content::CacheUsage) -> String {
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    for (name, help, value) in [
        (
            "remote_cache_bytes",
            "Bytes of remote blocks kept in the store.",
            usage.bytes,
        ),
        ("remote_cache_blocks", "Remote blocks kept in the store.", usage.blocks),
        (
            "remote_cache_max_bytes",
            "The budget of remote blocks kept (cache_max_bytes).",
            usage.max_bytes,
        ),
    ] {
        let gauge = IntGauge::with_opts(opts(name, help)).expect("valid metric");
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        collectors.push(Box::new(gauge));
    }
    text_of(collectors)
}

/// Each upstream gateway's families, labelled by its URL (configured, so bounded).
fn render_upstreams(reports: &[model::content::UpstreamReport]) -> String {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let counter = |name: &str, help: &str| IntCounterVec::new(opts(name, help), &["gateway"]).expect("valid metric");
    type Field = fn(&model::content::UpstreamReport) -> u64;
    let counters: [(&str, &str, Field); 9] = [
        (
            "upstream_requests_total",
            "Block requests sent to an upstream gateway.",
            |r| r.requests,
        ),
        (
            "upstream_blocks_total",
            "Blocks an upstream gateway sent that verified.",
            |r| r.blocks,
        ),
        (
            "upstream_bytes_total",
            "Bytes of the verified blocks an upstream gateway sent.",
            |r| r.bytes,
        ),
        (
            "upstream_not_found_total",
            "Blocks an upstream gateway said it does not have.",
            |r| r.not_found,
        ),
        (
            "upstream_failures_total",
            "Requests to an upstream gateway that failed (network, 5xx, timeout).",
            |r| r.failures,
        ),
        (
            "upstream_bad_blocks_total",
            "Blocks an upstream gateway sent that did not match their CID.",
            |r| r.bad_blocks,
        ),
        (
            "upstream_hedges_total",
            "Requests sent to an upstream gateway because another was slow.",
            |r| r.hedges,
        ),
        (
            "upstream_car_requests_total",
            "Ranges asked of an upstream gateway as one CAR.",
            |r| r.car_requests,
        ),
        (
            "upstream_car_refusals_total",
            "CAR requests an upstream gateway refused (it is then asked for blocks only).",
            |r| r.car_refusals,
        ),
    ];
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    for (name, help, field) in counters {
        let family = counter(name, help);
        for report in reports {
            family.with_label_values(&[report.name.as_str()]).inc_by(field(report));
        }
        collectors.push(Box::new(family));
    }
    let latency = prometheus::GaugeVec::new(
        opts(
            "upstream_latency_p95_seconds",
            "The p95 of an upstream gateway's recent block latencies.",
        ),
        &["gateway"],
    )
    .expect("valid metric");
    let quarantined = IntGaugeVec::new(
        opts(
            "upstream_quarantined",
            "1 while an upstream gateway is set aside (a wrong block, or three failures in a row).",
        ),
        &["gateway"],
    )
    .expect("valid metric");
    for report in reports {
        if let Some(p95) = report.recent_p95_ms {
            latency
                .with_label_values(&[report.name.as_str()])
                .set(p95 as f64 / 1000.0);
        }
        quarantined
            .with_label_values(&[report.name.as_str()])
            .set(i64::from(report.quarantined));
    }
    collectors.push(Box::new(latency));
    collectors.push(Box::new(quarantined));
    text_of(collectors)
}

/// The WebRTC families, read from the service at scrape time.
fn render_webrtc(totals: &model::webrtc::WebRtcTotals) -> String {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let connections = IntGaugeVec::new(
        opts(
            "webrtc_sessions",
            "Open WebRTC connections, by the quality of the rendition sent.",
        ),
        &["quality"],
    )
    .expect("valid metric");
    for (quality, count) in &totals.connections {
        connections.with_label_values(&[quality.as_str()]).set(*count as i64);
    }
    let mut collectors: Vec<Box<dyn Collector>> = vec![Box::new(connections)];
    let gauges = [
        (
            "webrtc_streams_playing",
            "Streams with a running playback.",
            totals.streams_playing as f64,
        ),
        (
            "webrtc_buffer_fill_ratio",
            "Mean frame-buffer fill level of running playbacks (0-1).",
            totals.fill_level,
        ),
        (
            "webrtc_packet_loss_ratio",
            "Mean loss reported by receivers over TWCC (0-1).",
            totals.packet_loss,
        ),
        (
            "webrtc_jitter_seconds",
            "Mean interarrival jitter receivers report in RTCP.",
            totals.jitter_seconds,
        ),
        (
            "webrtc_bandwidth_estimate_bytes_per_second",
            "Sum of the congestion controllers' estimates.",
            totals.bandwidth_estimate_bps / 8.0,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = prometheus::Gauge::with_opts(opts(name, help)).expect("valid metric");
        gauge.set(value);
        collectors.push(Box::new(gauge));
    }
    let counters = [
        (
            "webrtc_frames_sent_total",
            "Frames sent to WebRTC viewers.",
            totals.frames_sent_total,
        ),
        (
            "webrtc_sent_bytes_total",
            "Media bytes sent to WebRTC viewers.",
            totals.bytes_sent_total,
        ),
        (
            "webrtc_frames_dropped_total",
            "Frames viewers missed for falling behind.",
            totals.frames_dropped_total,
        ),
        (
            "webrtc_buffer_underflows_total",
            "Frames due while the buffer was empty.",
            totals.underflows_total,
        ),
        (
            "webrtc_buffer_overflows_total",
            "Times a stream fell over a second behind and skipped ahead.",
            totals.overflows_total,
        ),
        (
            "webrtc_quality_switches_total",
            "Rendition switches (auto and requested).",
            totals.quality_switches_total,
        ),
    ];
    for (name, help, value) in counters {
        let counter = prometheus::IntCounter::with_opts(opts(name, help)).expect("valid metric");
        counter.inc_by(value);
        collectors.push(Box::new(counter));
    }
    text_of(collectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn each_stream_counts_under_its_own_labels() {
        for (i, kind) in STREAM_TYPES.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
        for (i, way) in DIRECTIONS.iter().enumerate() {
            assert_eq!(*way as usize, i);
        }
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        let hub = Arc::new(NotificationHub::start(
            Arc::new(model::notifications::MemoryNotificationRepository::default()),
            10,
        ));
        let prometheus_metrics = PrometheusMetrics::new(hub, Arc::default(), Arc::default());
        prometheus_metrics.stream_started(StreamType::Websocket, Direction::Inbound);
        prometheus_metrics.stream_started(StreamType::Sse, Direction::Outbound);
        prometheus_metrics.stream_ended(StreamType::Sse, Direction::Outbound, Outcome::Aborted, 5);
        let text = prometheus_metrics.render();
        let value = |series: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
        };
        assert_eq!(
            value(r#"ipfs_stream_active_streams{direction="inbound",stream_type="websocket"}"#),
            1
        );
        assert_eq!(
            value(r#"ipfs_stream_active_streams{direction="outbound",stream_type="sse"}"#),
            0
        );
        assert_eq!(
            value(r#"ipfs_stream_active_streams{direction="outbound",stream_type="http"}"#),
            0
        );
        assert_eq!(
            value(r#"ipfs_stream_stream_bytes_total{direction="outbound",stream_type="sse"}"#),
            5
        );
        assert_eq!(
            value(r#"ipfs_stream_streams_total{direction="outbound",outcome="aborted",stream_type="sse"}"#),
            1
        );
        assert_eq!(
            value(r#"ipfs_stream_streams_total{direction="outbound",outcome="ok",stream_type="sse"}"#),
            0
        );
    }

    #[actix_web::test]
    async fn every_request_gets_the_label_of_the_route_it_matched() {
        use actix_web::{App, middleware::from_fn, test};
        let (seen, labels) = std::sync::mpsc::channel();
        let app = test::init_service(
            App::new()
                .wrap(from_fn(move |req: ServiceRequest, next: Next<_>| {
                    let seen = seen.clone();
                    async move {
                        let matched = req.match_pattern().map(|pattern| crate::routes::label_of(&pattern));
                        let response = next.call(req).await?;
                        let label = response.request().app_data::<RouteLabel>().map(|label| label.0);
                        seen.send((matched, label.map(str::to_owned))).unwrap();
                        Ok(response)
                    }
                }))
                .configure(crate::routes::register),
        )
        .await;
        let paths = [
            "/ipfs/QmA",
            "/ipfs/QmA/",
            "/ipfs/QmA/a/b.mp4",
            "/ipfs/a%2Fb",
            "/ipfs/a%2Fb/c",
            "/ipfs/",
            "/ipfs//x",
            "/ipfs",
            "/ipfsx/QmA",
            "/api/v1/content/QmA",
            "/api/v1/content/active",
            "/sse/stream/QmA/b",
            "/nowhere",
        ];
        for path in paths {
            // A method no route takes: the handlers need no state, and the 405 still has a label.
            test::call_service(
                &app,
                test::TestRequest::put().uri(&format!("{path}?format=raw")).to_request(),
            )
            .await;
            let (matched, label) = labels.recv().unwrap();
            assert_eq!(label, matched, "{path}");
        }
        for route in crate::routes::table() {
            assert_eq!(route.label, crate::routes::label_of(route.pattern));
        }
    }
}
