//! The configuration: flags and `IPFS_STREAM_*` variables over an optional TOML file over defaults,
//! gathered into one struct whose validation names the bad key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{GlobalOptions, LogFormat, ServeOptions};
use crate::error::Error;

/// Everything the process is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub kubo_api: Option<String>,
    pub log_format: LogFormat,
    pub listen: SocketAddr,
    pub max_upload_bytes: u64,
    pub notification_idle_timeout_secs: u64,
    pub notification_history: u64,
    pub record_streams: bool,
    pub sample_interval_ms: u64,
    pub metrics_retention_hours: u64,
    /// Stream records kept at most (older ones go first).
    pub max_stream_records: u64,
    pub anomaly_detector: String,
    pub allow_fault_injection: bool,
    pub instrumentation: bool,
    /// STUN/TURN URLs given to WebRTC clients (none by default: loopback and LAN need none).
    pub webrtc_ice_servers: Vec<String>,
    pub webrtc_max_streams: usize,
    pub webrtc_max_viewers_per_stream: usize,
    pub webrtc_max_connections: usize,
    /// Media goes on the server's own path over each connection's UDP socket rather than through
    /// the WebRTC stack's pipeline (see the README); off only to compare the two.
    pub webrtc_direct_media: bool,
    /// Threads of the runtime peers and playbacks run on: half the cores by default, the other
    /// half left to HTTP, demuxing and the database. One is the most efficient while it keeps up
    /// (no wake-up crosses threads); more carry more viewers on more cores.
    pub webrtc_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./ipfs-stream-data"),
            kubo_api: None,
            log_format: LogFormat::Pretty,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            notification_idle_timeout_secs: 300,
            notification_history: 1000,
            record_streams: true,
            sample_interval_ms: 1000,
            metrics_retention_hours: 48,
            max_stream_records: 1_000_000,
            anomaly_detector: "contextual".into(),
            allow_fault_injection: false,
            instrumentation: true,
            webrtc_ice_servers: Vec::new(),
            webrtc_max_streams: 100,
            webrtc_max_viewers_per_stream: 1000,
            webrtc_max_connections: 2000,
            webrtc_direct_media: true,
            webrtc_threads: std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1)),
        }
    }
}

/// The keys a config file may hold; an unknown key is an error that names it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kubo_api: Option<String>,
    log_format: Option<LogFormat>,
    listen: Option<String>,
    max_upload_bytes: Option<u64>,
    notification_idle_timeout_secs: Option<u64>,
    notification_history: Option<u64>,
    record_streams: Option<bool>,
    sample_interval_ms: Option<u64>,
    metrics_retention_hours: Option<u64>,
    max_stream_records: Option<u64>,
    anomaly_detector: Option<String>,
    allow_fault_injection: Option<bool>,
    instrumentation: Option<bool>,
    webrtc_ice_servers: Option<Vec<String>>,
    webrtc_max_streams: Option<usize>,
    webrtc_max_viewers_per_stream: Option<usize>,
    webrtc_max_connections: Option<usize>,
    webrtc_direct_media: Option<bool>,
    webrtc_threads: Option<usize>,
}

fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read config {}", path.display()), e))?;
    toml::from_str(&text).map_err(|e| {
        // Name the key of the line the error points at: toml's message alone may not.
        let key = e.span().and_then(|span| {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            line.split_once('=').map(|(key, _)| key.trim().to_owned())
        });
        match key {
            Some(key) => Error::Config(format!("{}: {key}: {}", path.display(), e.message())),
            None => Error::Config(format!("{}: {}", path.display(), e.message())),
        }
    })
}

impl Config {
    /// Flags (and their environment variables) first, then the config file, then defaults.
    pub fn load(global: &GlobalOptions, serve: Option<&ServeOptions>) -> Result<Self, Error> {
        let file = global.config.as_deref().map(read_file).transpose()?.unwrap_or_default();
        let defaults = Config::default();
        let listen = match (serve.and_then(|s| s.listen), file.listen) {
            (Some(listen), _) => listen,
            (None, Some(text)) => text
                .parse()
                .map_err(|e| Error::Config(format!("listen: {text:?} is not an address:port ({e})")))?,
            (None, None) => defaults.listen,
        };
        let config = Config {
            data_dir: global.data_dir.clone().or(file.data_dir).unwrap_or(defaults.data_dir),
            kubo_api: global.kubo_api.clone().or(file.kubo_api),
            log_format: global.log_format.or(file.log_format).unwrap_or(defaults.log_format),
            listen,
            max_upload_bytes: serve
                .and_then(|s| s.max_upload_bytes)
                .or(file.max_upload_bytes)
                .unwrap_or(defaults.max_upload_bytes),
            notification_idle_timeout_secs: serve
                .and_then(|s| s.notification_idle_timeout)
                .or(file.notification_idle_timeout_secs)
                .unwrap_or(defaults.notification_idle_timeout_secs),
            notification_history: serve
                .and_then(|s| s.notification_history)
                .or(file.notification_history)
                .unwrap_or(defaults.notification_history),
            record_streams: serve
                .and_then(|s| s.record_streams)
                .or(file.record_streams)
                .unwrap_or(defaults.record_streams),
            sample_interval_ms: serve
                .and_then(|s| s.sample_interval_ms)
                .or(file.sample_interval_ms)
                .unwrap_or(defaults.sample_interval_ms),
            metrics_retention_hours: serve
                .and_then(|s| s.metrics_retention_hours)
                .or(file.metrics_retention_hours)
                .unwrap_or(defaults.metrics_retention_hours),
            max_stream_records: serve
                .and_then(|s| s.max_stream_records)
                .or(file.max_stream_records)
                .unwrap_or(defaults.max_stream_records),
            anomaly_detector: serve
                .and_then(|s| s.anomaly_detector.clone())
                .or(file.anomaly_detector)
                .unwrap_or(defaults.anomaly_detector),
            allow_fault_injection: serve
                .and_then(|s| s.allow_fault_injection)
                .or(file.allow_fault_injection)
                .unwrap_or(defaults.allow_fault_injection),
            instrumentation: serve
                .and_then(|s| s.instrumentation)
                .or(file.instrumentation)
                .unwrap_or(defaults.instrumentation),
            webrtc_ice_servers: file.webrtc_ice_servers.unwrap_or(defaults.webrtc_ice_servers),
            webrtc_max_streams: file.webrtc_max_streams.unwrap_or(defaults.webrtc_max_streams),
            webrtc_max_viewers_per_stream: file
                .webrtc_max_viewers_per_stream
                .unwrap_or(defaults.webrtc_max_viewers_per_stream),
            webrtc_max_connections: file.webrtc_max_connections.unwrap_or(defaults.webrtc_max_connections),
            webrtc_direct_media: file.webrtc_direct_media.unwrap_or(defaults.webrtc_direct_media),
            webrtc_threads: file.webrtc_threads.unwrap_or(defaults.webrtc_threads),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values together; the error names the key at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("data_dir: must not be empty".into()));
        }
        if self.max_upload_bytes == 0 {
            return Err(Error::Config("max_upload_bytes: must be at least 1".into()));
        }
        if self.notification_idle_timeout_secs == 0 {
            return Err(Error::Config(
                "notification_idle_timeout_secs: must be at least 1".into(),
            ));
        }
        if self.notification_history == 0 {
            return Err(Error::Config("notification_history: must be at least 1".into()));
        }
        if !(50..=60_000).contains(&self.sample_interval_ms) {
            return Err(Error::Config("sample_interval_ms: must be between 50 and 60000".into()));
        }
        for url in &self.webrtc_ice_servers {
            if !["stun:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(Error::Config(format!(
                    "webrtc_ice_servers: {url:?} is not a stun:, turn: or turns: URL"
                )));
            }
        }
        for (key, value) in [
            ("webrtc_max_streams", self.webrtc_max_streams),
            ("webrtc_max_viewers_per_stream", self.webrtc_max_viewers_per_stream),
            ("webrtc_max_connections", self.webrtc_max_connections),
            ("webrtc_threads", self.webrtc_threads),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{key}: must be at least 1")));
            }
        }
        if self.webrtc_threads > 64 {
            return Err(Error::Config("webrtc_threads: at most 64".into()));
        }
        if self.metrics_retention_hours == 0 {
            return Err(Error::Config("metrics_retention_hours: must be at least 1".into()));
        }
        if self.max_stream_records == 0 {
            return Err(Error::Config("max_stream_records: must be at least 1".into()));
        }
        if model::anomaly::DetectorKind::parse(&self.anomaly_detector).is_none() {
            return Err(Error::Config(format!(
                "anomaly_detector: {:?} is not contextual, relative_entropy or windowed_gaussian",
                self.anomaly_detector
            )));
        }
        if let Some(api) = &self.kubo_api {
            let rest = api.strip_prefix("http://").ok_or_else(|| {
                Error::Config(format!(
                    "kubo_api: {api:?} must be an http:// URL (Kubo's RPC API is local)"
                ))
            })?;
            if rest.trim_end_matches('/').is_empty() {
                return Err(Error::Config(format!("kubo_api: {api:?} has no host")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let config = file(
            "data_dir = \"/srv/ipfs\"\nlisten = \"127.0.0.1:9000\"\nmax_upload_bytes = 5\nlog_format = \"json\"\n\
             max_stream_records = 10\nrecord_streams = false\ninstrumentation = false\nwebrtc_direct_media = false\n",
        );
        let global = GlobalOptions {
            config: Some(config.path().to_owned()),
            data_dir: Some("/flag/dir".into()),
            ..Default::default()
        };
        let serve = ServeOptions {
            max_stream_records: Some(20),
            ..Default::default()
        };
        let loaded = Config::load(&global, Some(&serve)).unwrap();
        assert_eq!(loaded.max_stream_records, 20);
        assert!(!loaded.record_streams && !loaded.instrumentation && !loaded.webrtc_direct_media);
        assert_eq!(loaded.data_dir, PathBuf::from("/flag/dir"));
        assert_eq!(loaded.listen, "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(loaded.max_upload_bytes, 5);
        assert_eq!(loaded.log_format, LogFormat::Json);
        assert_eq!(
            Config::load(&GlobalOptions::default(), None).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("max_upload_bytes = 0", "max_upload_bytes"),
            ("max_stream_records = 0", "max_stream_records"),
            ("webrtc_threads = 0", "webrtc_threads"),
            ("webrtc_threads = 65", "webrtc_threads"),
            ("kubo_api = \"https://example.invalid\"", "kubo_api"),
            ("log_format = \"xml\"", "log_format"),
            ("colour = \"blue\"", "colour"),
            ("max_upload_bytes = \"lots\"", "max_upload_bytes"),
        ];
        for (text, key) in cases {
            let config = file(text);
            let global = GlobalOptions {
                config: Some(config.path().to_owned()),
                ..Default::default()
            };
            let err = Config::load(&global, Some(&ServeOptions::default()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
