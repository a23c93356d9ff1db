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
        /// Keep records in this PostgreSQL database (postgres://user:password@host/db), which
        /// several instances may share, instead of SQLite in the data dir.
        #[arg(long, global = true, env = "IPFS_STREAM_DATABASE_URL")]
        database_url: url::Url,
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
        if let Some(url) = &self.database_url {
            let shown = persistence::database::redacted(url.as_str());
            if !matches!(url.scheme(), "postgres" | "postgresql") {
                return Err(invalid(
                    "database_url",
                    format!("{shown:?} must be a postgres:// URL (SQLite needs none: it lives in data_dir)"),
                ));
            }
            if url.path().trim_start_matches('/').is_empty() {
                return Err(invalid("database_url", format!("{shown:?} names no database")));
            }
        }
        Ok(())
    }
}

config_section! {
    /// `[upstream]`: trustless gateways asked for blocks the store lacks, and the budget of what
    /// is kept from them. Every command reads it (`pin add` fetches a remote DAG).
    "upstream" => Upstream, UpstreamLayer {
        /// A trustless gateway to fetch missing blocks from (repeatable; comma-separated in the
        /// variable), e.g. https://trustless-gateway.link. Every block is verified.
        #[arg(long = "gateway", global = true, env = "IPFS_STREAM_GATEWAYS", value_delimiter = ',')]
        gateways: Vec<url::Url> = Vec::new(),
        /// A trustless gateway asked for raw blocks only, never for a range as one CAR
        /// (repeatable; for gateways that serve no CARs).
        #[arg(long = "blocks-only-gateway", global = true, env = "IPFS_STREAM_BLOCKS_ONLY_GATEWAYS", value_delimiter = ',')]
        blocks_only_gateways: Vec<url::Url> = Vec::new(),
        /// Another instance of this service, by its base URL (repeatable): asked like a gateway,
        /// but for what it stores only (`Cache-Control: only-if-cached`), so that instances
        /// listing each other never ask round in a ring.
        #[arg(long = "peer", global = true, env = "IPFS_STREAM_PEERS", value_delimiter = ',')]
        peers: Vec<url::Url> = Vec::new(),
        /// Seconds to wait for the upstreams to supply a block before the request fails (502,
        /// or 404 when every gateway said it has no such block).
        #[arg(long, global = true, env = "IPFS_STREAM_REMOTE_TIMEOUT_SECS")]
        remote_timeout_secs: u64 = model::content::RemoteOptions::default().timeout.as_secs(),
        /// Seconds a gateway that sent a wrong block (or failed three times in a row) is asked
        /// only when no other is left.
        #[arg(long, global = true, env = "IPFS_STREAM_GATEWAY_QUARANTINE_SECS")]
        gateway_quarantine_secs: u64 = model::content::RemoteOptions::default().quarantine.as_secs(),
        /// Bytes of fetched blocks kept in the store; past it, the least recently used are
        /// deleted (never a block of pinned content).
        #[arg(long, global = true, env = "IPFS_STREAM_CACHE_MAX_BYTES")]
        cache_max_bytes: u64 = model::content::cache_budget::DEFAULT_CACHE_MAX_BYTES,
    }
}

impl Upstream {
    pub fn validate(&self) -> Result<(), Invalid> {
        let lists = [
            ("gateways", &self.gateways),
            ("blocks_only_gateways", &self.blocks_only_gateways),
            ("peers", &self.peers),
        ];
        for (key, urls) in lists {
            for url in urls {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid(
                        key,
                        format!("{:?} must be an http:// or https:// URL", url.as_str()),
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid(key, format!("{:?} has no host", url.as_str())));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(invalid(
                        key,
                        format!("{:?}: give the base URL, without query or fragment", url.as_str()),
                    ));
                }
            }
        }
        at_least_one("remote_timeout_secs", self.remote_timeout_secs)
    }

    /// What the model's [`model::content::Remote`] is given.
    pub fn remote_options(&self) -> model::content::RemoteOptions {
        model::content::RemoteOptions {
            timeout: std::time::Duration::from_secs(self.remote_timeout_secs),
            quarantine: std::time::Duration::from_secs(self.gateway_quarantine_secs),
        }
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
        /// Connections open at once from one address (IPv6: one /64); more are closed on
        /// arrival. 0: no cap.
        #[arg(long, env = "IPFS_STREAM_MAX_CONNECTIONS_PER_IP")]
        max_connections_per_ip: u32 = controllers::connections::ConnectionLimits::default().per_address,
        /// Connections open at once in all (WebSockets included); more are closed on arrival.
        /// 0: no cap.
        #[arg(id = "http_max_connections", long = "max-connections", env = "IPFS_STREAM_MAX_CONNECTIONS")]
        max_connections: u32 = controllers::connections::ConnectionLimits::default().total,
        /// Milliseconds a client has to send a request's head once connected (408 after).
        #[arg(long, env = "IPFS_STREAM_HEADER_TIMEOUT_MS")]
        header_timeout_ms: u64 = 5000,
        /// Seconds an idle keep-alive connection stays open. 0: closed after each response.
        #[arg(long, env = "IPFS_STREAM_KEEP_ALIVE_SECS")]
        keep_alive_secs: u64 = 5,
        /// Threads serving HTTP and WebSocket connections, 1 to 64, each its own share of them:
        /// one per core by default.
        #[arg(long = "http-workers", env = "IPFS_STREAM_HTTP_WORKERS")]
        workers: usize = std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        /// Seconds an upload body may send nothing before it fails with 408, storing nothing.
        #[arg(long, env = "IPFS_STREAM_BODY_IDLE_TIMEOUT_SECS")]
        body_idle_timeout_secs: u64 = controllers::Limits::default().body_idle_timeout.as_secs(),
        /// Bytes one upload may hold in memory between its connection and the store.
        #[arg(long, env = "IPFS_STREAM_UPLOAD_BUFFER_BYTES")]
        upload_buffer_bytes: u64 = controllers::Limits::default().upload_buffer_bytes as u64,
        /// Bytes all uploads together may hold so; past it, uploads wait for room.
        #[arg(long, env = "IPFS_STREAM_UPLOAD_BUFFERS_TOTAL_BYTES")]
        upload_buffers_total_bytes: u64 = controllers::Limits::default().upload_buffers_total_bytes as u64,
        /// PEM certificate chain: serve HTTPS (with tls_key) instead of HTTP.
        #[arg(long, env = "IPFS_STREAM_TLS_CERT")]
        tls_cert: PathBuf,
        /// PEM private key of tls_cert.
        #[arg(long, env = "IPFS_STREAM_TLS_KEY")]
        tls_key: PathBuf,
    }
}

impl Http {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("tls_cert", "tls_cert and tls_key go together"));
        }
        at_least_one("max_upload_bytes", self.max_upload_bytes)?;
        at_least_one("header_timeout_ms", self.header_timeout_ms)?;
        at_least_one("workers", self.workers as u64)?;
        if self.workers > 64 {
            return Err(invalid("workers", "at most 64"));
        }
        at_least_one("body_idle_timeout_secs", self.body_idle_timeout_secs)?;
        at_least_one("upload_buffer_bytes", self.upload_buffer_bytes)?;
        at_least_one("upload_buffers_total_bytes", self.upload_buffers_total_bytes)?;
        if self.upload_buffer_bytes > self.upload_buffers_total_bytes {
            return Err(invalid(
                "upload_buffer_bytes",
                "must not be more than upload_buffers_total_bytes",
            ));
        }
        Ok(())
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
    /// `[cluster]`: several instances on one PostgreSQL database acting as one service.
    "cluster" => Cluster, ClusterLayer {
        /// This instance's name among those sharing the database (default: host name and
        /// listening port); its events are relayed to the others under it.
        #[arg(long, env = "IPFS_STREAM_INSTANCE_NAME")]
        instance_name: String,
    }
}

impl Cluster {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(name) = &self.instance_name
            && (name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "instance_name",
                "must be 1 to 200 characters, without control characters",
            ));
        }
        Ok(())
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

/// Whether requests must carry a credential.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthSetting {
    /// Routes that need a scope need a token, a JWT or a ticket.
    Tokens,
    /// No credentials: everyone may do everything (loopback listen addresses only).
    Off,
}

config_section! {
    /// `[auth]`: who may use which route, cross-site requests, and limits per caller.
    "auth" => Auth, AuthLayer {
        /// Credentials: tokens (routes that need a scope need a token, JWT or ticket) or off
        /// (everyone may do everything; refused unless the server listens on loopback only).
        #[arg(long = "auth", env = "IPFS_STREAM_AUTH", value_enum)]
        mode: AuthSetting = AuthSetting::Tokens,
        /// Anyone may read content by CID (gateway, /ws/stream, /sse/stream); false: content:read
        /// is needed.
        #[arg(long, env = "IPFS_STREAM_PUBLIC_READ", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        public_read: bool = controllers::access::AccessSettings::default().public_read,
        /// Anyone may play a CID or a stream (WHEP, /ws/webrtc, /player); false: content:read is
        /// needed.
        #[arg(long, env = "IPFS_STREAM_PUBLIC_PLAYBACK", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        public_playback: bool = controllers::access::AccessSettings::default().public_playback,
        /// Origins besides the server's own whose pages may call the API, comma-separated
        /// (https://app.example:8443).
        #[arg(long, env = "IPFS_STREAM_ALLOWED_ORIGINS", value_delimiter = ',')]
        allowed_origins: Vec<String> = Vec::new(),
        /// PEM public key (Ed25519, P-256 or RSA) of an identity provider whose JWTs are accepted.
        #[arg(long, env = "IPFS_STREAM_JWT_PUBLIC_KEY")]
        jwt_public_key: PathBuf,
        /// File holding the HS256 secret (32 bytes or more) of accepted JWTs.
        #[arg(long, env = "IPFS_STREAM_JWT_HS256_SECRET_FILE")]
        jwt_hs256_secret_file: PathBuf,
        /// The audience (aud) an accepted JWT must name.
        #[arg(long, env = "IPFS_STREAM_JWT_AUDIENCE")]
        jwt_audience: String,
        /// Requests per second of one token or JWT subject (0: no limit).
        #[arg(long, env = "IPFS_STREAM_RATE_LIMIT_PER_SECOND")]
        rate_limit_per_second: u32 = controllers::rate_limits::RateSettings::default().per_token,
        /// Requests per second of one client address without a credential (0: no limit).
        #[arg(long, env = "IPFS_STREAM_ANON_RATE_LIMIT_PER_SECOND")]
        anon_rate_limit_per_second: u32 = controllers::rate_limits::RateSettings::default().anonymous,
        /// Requests a caller may make at once above its rate.
        #[arg(long, env = "IPFS_STREAM_RATE_LIMIT_BURST")]
        rate_limit_burst: u32 = controllers::rate_limits::RateSettings::default().burst,
        /// New WebRTC sessions per minute of one caller (0: no limit).
        #[arg(long, env = "IPFS_STREAM_SESSION_RATE_LIMIT_PER_MINUTE")]
        session_rate_limit_per_minute: u32 = controllers::rate_limits::RateSettings::default().sessions_per_minute,
    }
}

impl Auth {
    pub fn validate(&self) -> Result<(), Invalid> {
        for origin in &self.allowed_origins {
            let parsed = url::Url::parse(origin).map_err(|e| invalid("allowed_origins", format!("{origin:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.origin().ascii_serialization() != *origin {
                return Err(invalid(
                    "allowed_origins",
                    format!(
                        "{origin:?} is not an origin: scheme://host[:port], without a path (e.g. {})",
                        parsed.origin().ascii_serialization()
                    ),
                ));
            }
        }
        if self.jwt_public_key.is_some() && self.jwt_hs256_secret_file.is_some() {
            return Err(invalid(
                "jwt_public_key",
                "set jwt_public_key or jwt_hs256_secret_file, not both",
            ));
        }
        let jwt_key = self.jwt_public_key.is_some() || self.jwt_hs256_secret_file.is_some();
        match (jwt_key, self.jwt_audience.as_deref()) {
            (true, None | Some("")) => Err(invalid("jwt_audience", "JWTs are accepted only for a named audience")),
            (false, Some(_)) => Err(invalid("jwt_audience", "needs jwt_public_key or jwt_hs256_secret_file")),
            _ => Ok(()),
        }
    }
}
