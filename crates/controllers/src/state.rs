//! What the handlers share: the model's services, behind their traits, and request limits.

use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use model::content::ContentService;
use model::faults::Faults;
use model::monitoring::{LiveStats, MemoryMetricsHistory, MetricsHistory};
use model::notifications::{NotificationHub, Notifier};
use model::stream_records::StreamMetrics;

/// Limits on what a request may ask of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest upload accepted, in bytes; larger gets 413 and stores nothing.
    pub max_upload_bytes: u64,
    /// A notification connection with no message from its client for this long is closed.
    pub notification_idle_timeout: std::time::Duration,
    /// Whether streams are recorded in the streaming metrics.
    pub record_streams: bool,
    /// An upload body that sends nothing for this long fails with 408 and stores nothing.
    pub body_idle_timeout: std::time::Duration,
    /// Bytes one upload may hold between its connection and its import.
    pub upload_buffer_bytes: usize,
    /// Bytes all uploads together may hold so.
    pub upload_buffers_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            notification_idle_timeout: std::time::Duration::from_secs(300),
            record_streams: true,
            body_idle_timeout: std::time::Duration::from_secs(30),
            upload_buffer_bytes: 4 << 20,
            upload_buffers_total_bytes: 256 << 20,
        }
    }
}

/// The services handlers call; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub content: Arc<dyn ContentService>,
    pub metrics: Arc<dyn StreamMetrics>,
    /// Live notifications: subscriptions and history.
    pub hub: Arc<NotificationHub>,
    /// The same hub, as operations publish to it.
    pub notifier: Arc<dyn Notifier>,
    /// Prometheus instruments, served at `/metrics`.
    pub prometheus_metrics: Arc<crate::prometheus_metrics::PrometheusMetrics>,
    pub limits: Limits,
    /// Counters the sampler reads: bytes, open streams, response times.
    pub live: Arc<LiveStats>,
    /// Sampled series and anomalies.
    pub history: Arc<dyn MetricsHistory>,
    /// Anomalies the sampler raised, for `/metrics`.
    pub anomalies_raised: Arc<AtomicU64>,
    /// Fault injection, when the server allows it.
    pub faults: Option<Arc<Faults>>,
    /// What the block store served.
    pub store_counters: Arc<model::content::StoreCounters>,
    /// The upstream gateways blocks the store lacks come from, when configured.
    pub upstreams: Option<Arc<model::content::Remote>>,
    /// The budget of the blocks kept from them.
    pub cache_budget: Option<Arc<model::content::CacheBudget>>,
    /// WebRTC playback, when enabled.
    pub webrtc: Option<Arc<dyn model::webrtc::WebRtcService>>,
    /// Who may use which route, and the credentials that say so.
    pub access: Arc<crate::access::AccessControl>,
    /// Open connections under their caps (the server admits each one as it arrives).
    pub connections: Arc<crate::connections::ConnectionGate>,
    /// Room for upload bodies in flight, as `limits` sizes it.
    pub upload_buffers: Arc<crate::upload::UploadBuffers>,
}

impl AppState {
    pub fn new(content: Arc<dyn ContentService>, metrics: Arc<dyn StreamMetrics>, hub: Arc<NotificationHub>) -> Self {
        let anomalies_raised = Arc::new(AtomicU64::new(0));
        let store_counters = Arc::new(model::content::StoreCounters::default());
        Self {
            content,
            metrics,
            notifier: hub.clone(),
            prometheus_metrics: Arc::new(crate::prometheus_metrics::PrometheusMetrics::new(
                hub.clone(),
                anomalies_raised.clone(),
                store_counters.clone(),
            )),
            hub,
            limits: Limits::default(),
            live: Arc::new(LiveStats::default()),
            history: Arc::new(MemoryMetricsHistory::default()),
            anomalies_raised,
            faults: None,
            store_counters,
            upstreams: None,
            cache_budget: None,
            webrtc: None,
            access: Arc::new(crate::access::AccessControl::auth_off()),
            connections: crate::connections::ConnectionGate::new(Default::default()),
            upload_buffers: Arc::new(upload_buffers(&Limits::default())),
        }
    }

    /// Guards routes with these settings and credentials (authentication is off until this is
    /// called: see `AccessControl::auth_off`).
    pub fn with_access(mut self, access: crate::access::AccessControl) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// The live counters the sampler reads, where it stores, its count of anomalies, and the
    /// store's counters.
    pub fn with_monitoring(
        mut self,
        live: Arc<LiveStats>,
        history: Arc<dyn MetricsHistory>,
        anomalies_raised: Arc<AtomicU64>,
        store_counters: Arc<model::content::StoreCounters>,
    ) -> Self {
        self.prometheus_metrics = Arc::new(crate::prometheus_metrics::PrometheusMetrics::new(
            self.hub.clone(),
            anomalies_raised.clone(),
            store_counters.clone(),
        ));
        self.store_counters = store_counters;
        self.live = live;
        self.history = history;
        self.anomalies_raised = anomalies_raised;
        self
    }

    /// Reports these upstream gateways and the budget of what is kept from them in `/metrics`.
    pub fn with_upstreams(
        mut self,
        remote: Option<Arc<model::content::Remote>>,
        budget: Option<Arc<model::content::CacheBudget>>,
    ) -> Self {
        self.upstreams = remote;
        self.cache_budget = budget;
        self
    }

    /// Allows `POST /api/v1/faults` to inject faults.
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Enables WebRTC playback (signaling, WHEP, REST control).
    pub fn with_webrtc(mut self, webrtc: Arc<dyn model::webrtc::WebRtcService>) -> Self {
        self.webrtc = Some(webrtc);
        self
    }

    /// Caps the connections an address, and everyone together, may hold open.
    pub fn with_connection_limits(mut self, limits: crate::connections::ConnectionLimits) -> Self {
        self.connections = crate::connections::ConnectionGate::new(limits);
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.upload_buffers = Arc::new(upload_buffers(&limits));
        self.limits = limits;
        self
    }
}

fn upload_buffers(limits: &Limits) -> crate::upload::UploadBuffers {
    crate::upload::UploadBuffers::new(limits.upload_buffer_bytes, limits.upload_buffers_total_bytes)
}
