//! The sections of the configuration. A key is declared here once: its doc line (the `--help`
//! text), its flag and `IPFS_STREAM_*` variable, its type and its default; its checks follow in
//! the section's `validate`. Where the value is the model's or the controllers', so is the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use model::anomaly::DetectorKind;

use super::section::config_section;

/// A value no section accepts: the key and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key,
        problem: problem.into(),
    }
}

fn at_least_one(key: &'static str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

/// How logs are written on stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

config_section! {
    /// `[store]`: where content and records are kept. Every command reads it.
    "store" => Store, StoreLayer {
        /// Directory of the embedded store and the database.
        #[arg(long, global = true, env = "IPFS_STREAM_DATA_DIR")]
        data_dir: PathBuf = PathBuf::from("./ipfs-stream-data"),
        /// Keep blocks in a Kubo node reached over its RPC API (e.g. http://127.0.0.1:5001)
        /// instead of the embedded store.
        #[arg(long, global = true, env = "IPFS_STREAM_KUBO_API")]
        kubo_api: url::Url,
    }
}

impl Store {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if let Some(api) = &self.kubo_api {
            if api.scheme() != "http" {
                return Err(invalid(
                    "kubo_api",
                    format!("{:?} must be an http:// URL (Kubo's RPC API is local)", api.as_str()),
                ));
            }
            if api.host_str().is_none_or(str::is_empty) {
                return Err(invalid("kubo_api", format!("{:?} has no host", api.as_str())));
            }
        }
        Ok(())
    }
}

config_section! {
    /// `[log]`: what the process says on stderr (`RUST_LOG` sets the level).
    "log" => Log, LogLayer {
        /// Log format on stderr.
        #[arg(long = "log-format", global = true, env = "IPFS_STREAM_LOG_FORMAT", value_enum)]
        format: LogFormat = LogFormat::Pretty,
    }
}

config_section! {
    /// `[http]`: where the server listens and what a request may carry.
    "http" => Http, HttpLayer {
        /// Address to listen on.
        #[arg(long, env = "IPFS_STREAM_LISTEN")]
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        /// Largest upload accepted, in bytes; larger gets 413 and stores nothing.
        #[arg(long, env = "IPFS_STREAM_MAX_UPLOAD_BYTES")]
        max_upload_bytes: u64 = controllers::Limits::default().max_upload_bytes,
    }
}

impl Http {
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one("max_upload_bytes", self.max_upload_bytes)
    }
}

config_section! {
    /// `[notifications]`: live events and their history.
    "notifications" => Notifications, NotificationsLayer {
        /// Seconds a notification connection may stay silent before it is closed.
        #[arg(long = "notification-idle-timeout", env = "IPFS_STREAM_NOTIFICATION_IDLE_TIMEOUT")]
        idle_timeout_secs: u64 = controllers::Limits::default().notification_idle_timeout.as_secs(),
        /// Notifications kept in the history, per type.
        #[arg(long = "notification-history", env = "IPFS_STREAM_NOTIFICATION_HISTORY")]
        history: u64 = 1000,
    }
}

impl Notifications {
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one("idle_timeout_secs", self.idle_timeout_secs)?;
        at_least_one("history", self.history)
    }
}

config_section! {
    /// `[monitoring]`: request and stream accounting, the sampled series, anomaly detection.
    "monitoring" => Monitoring, MonitoringLayer {
        /// Count requests and streams for /metrics, sample them and detect anomalies (the stream
        /// records have their own switch, --record-streams).
        #[arg(long, env = "IPFS_STREAM_INSTRUMENTATION", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        instrumentation: bool = true,
        /// Record every stream in the streaming metrics.
        #[arg(long, env = "IPFS_STREAM_RECORD_STREAMS", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        record_streams: bool = controllers::Limits::default().record_streams,
        /// Milliseconds between samples of the server's series, 50 to 60000.
        #[arg(long, env = "IPFS_STREAM_SAMPLE_INTERVAL_MS")]
        sample_interval_ms: u64 = millis(model::monitoring::SamplerConfig::default().interval),
        /// Hours of samples, anomalies and stream records kept.
        #[arg(long = "metrics-retention-hours", env = "IPFS_STREAM_METRICS_RETENTION_HOURS")]
        retention_hours: u64 = model::monitoring::SamplerConfig::default().retention.as_secs() / 3600,
        /// Stream records kept at most; the oldest go first.
        #[arg(long, env = "IPFS_STREAM_MAX_STREAM_RECORDS")]
        max_stream_records: u64 = model::stream_records::Retention::default().max_records,
        /// Detector run on every sampled series: contextual, relative_entropy or windowed_gaussian.
        #[arg(long, env = "IPFS_STREAM_ANOMALY_DETECTOR")]
        anomaly_detector: DetectorKind = model::monitoring::SamplerConfig::default().detector,
        /// Allow `POST /api/v1/faults` to inject store latency (for drills and the simulator).
        #[arg(long, env = "IPFS_STREAM_ALLOW_FAULT_INJECTION", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        allow_fault_injection: bool = false,
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Monitoring {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(50..=60_000).contains(&self.sample_interval_ms) {
            return Err(invalid("sample_interval_ms", "must be between 50 and 60000"));
        }
        at_least_one("retention_hours", self.retention_hours)?;
        at_least_one("max_stream_records", self.max_stream_records)
    }
}

config_section! {
    /// `[webrtc]`: WebRTC playback, its limits and the threads it runs on.
    "webrtc" => WebRtc, WebRtcLayer {
        /// STUN/TURN URLs given to WebRTC clients, comma-separated (none by default: loopback and
        /// LAN need none).
        #[arg(long = "webrtc-ice-servers", env = "IPFS_STREAM_WEBRTC_ICE_SERVERS", value_delimiter = ',')]
        ice_servers: Vec<String> = Vec::new(),
        /// Created streams at once (429 beyond).
        #[arg(long = "webrtc-max-streams", env = "IPFS_STREAM_WEBRTC_MAX_STREAMS")]
        max_streams: usize = model::webrtc::WebRtcLimits::default().max_streams,
        /// Connections per stream (429 beyond).
        #[arg(long = "webrtc-max-viewers-per-stream", env = "IPFS_STREAM_WEBRTC_MAX_VIEWERS_PER_STREAM")]
        max_viewers_per_stream: usize = model::webrtc::WebRtcLimits::default().max_viewers_per_stream,
        /// WebRTC connections in all (503 beyond; lowered to what the open files limit leaves).
        #[arg(long = "webrtc-max-connections", env = "IPFS_STREAM_WEBRTC_MAX_CONNECTIONS")]
        max_connections: usize = model::webrtc::WebRtcLimits::default().max_connections,
        /// Media on the server's own path over each connection's socket rather than through the
        /// WebRTC stack's pipeline; off only to compare the two.
        #[arg(long = "webrtc-direct-media", env = "IPFS_STREAM_WEBRTC_DIRECT_MEDIA", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        direct_media: bool = model::webrtc::PeerConfig::default().direct_media,
        /// Threads peers and playbacks run on, 1 to 64: half the cores by default, the other half
        /// left to HTTP, demuxing and the database (one is the most efficient while it keeps up).
        #[arg(long = "webrtc-threads", env = "IPFS_STREAM_WEBRTC_THREADS")]
        threads: usize = std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1)),
    }
}

impl WebRtc {
    pub fn validate(&self) -> Result<(), Invalid> {
        for url in &self.ice_servers {
            if !["stun:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(invalid(
                    "ice_servers",
                    format!("{url:?} is not a stun:, turn: or turns: URL"),
                ));
            }
        }
        for (key, value) in [
            ("max_streams", self.max_streams),
            ("max_viewers_per_stream", self.max_viewers_per_stream),
            ("max_connections", self.max_connections),
            ("threads", self.threads),
        ] {
            at_least_one(key, value as u64)?;
        }
        if self.threads > 64 {
            return Err(invalid("threads", "at most 64"));
        }
        Ok(())
    }
}
