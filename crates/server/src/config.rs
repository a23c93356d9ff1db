//! The configuration, in sections (`[store]`, `[upstream]`, `[log]`, `[http]`, `[auth]`, `[notifications]`,
//! `[monitoring]`, `[webrtc]`, `[cluster]`): each key from its flag, else its `IPFS_STREAM_*` variable, else
//! the TOML file named by `--config`, else its default, in one merge; then each section checks
//! its values, and an error names the key at fault.

pub mod section;
pub mod sections;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use section::Section;
pub use sections::{
    Auth, AuthSetting, Cluster, Http, Log, LogFormat, Monitoring, Notifications, Store, Upstream, WebRtc,
};
use sections::{
    AuthLayer, ClusterLayer, HttpLayer, Invalid, LogLayer, MonitoringLayer, NotificationsLayer, StoreLayer,
    UpstreamLayer, WebRtcLayer,
};

use crate::cli::{GlobalOptions, ServeOptions};
use crate::error::Error;

/// Everything the process is configured with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub store: Store,
    pub upstream: Upstream,
    pub log: Log,
    pub http: Http,
    pub auth: Auth,
    pub notifications: Notifications,
    pub monitoring: Monitoring,
    pub webrtc: WebRtc,
    pub cluster: Cluster,
}

/// What a config file may hold: sections, each with the keys its section declares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    store: StoreLayer,
    #[serde(default)]
    upstream: UpstreamLayer,
    #[serde(default)]
    log: LogLayer,
    #[serde(default)]
    http: HttpLayer,
    #[serde(default)]
    auth: AuthLayer,
    #[serde(default)]
    notifications: NotificationsLayer,
    #[serde(default)]
    monitoring: MonitoringLayer,
    #[serde(default)]
    webrtc: WebRtcLayer,
    #[serde(default)]
    cluster: ClusterLayer,
}

/// Keys of the flat file of earlier releases, read for one more release: `(old, section, key)`.
const FLAT_KEYS: &[(&str, &str, &str)] = &[
    ("data_dir", "store", "data_dir"),
    ("kubo_api", "store", "kubo_api"),
    ("log_format", "log", "format"),
    ("listen", "http", "listen"),
    ("max_upload_bytes", "http", "max_upload_bytes"),
    ("notification_idle_timeout_secs", "notifications", "idle_timeout_secs"),
    ("notification_history", "notifications", "history"),
    ("record_streams", "monitoring", "record_streams"),
    ("sample_interval_ms", "monitoring", "sample_interval_ms"),
    ("metrics_retention_hours", "monitoring", "retention_hours"),
    ("max_stream_records", "monitoring", "max_stream_records"),
    ("anomaly_detector", "monitoring", "anomaly_detector"),
    ("allow_fault_injection", "monitoring", "allow_fault_injection"),
    ("instrumentation", "monitoring", "instrumentation"),
    ("webrtc_ice_servers", "webrtc", "ice_servers"),
    ("webrtc_max_streams", "webrtc", "max_streams"),
    ("webrtc_max_viewers_per_stream", "webrtc", "max_viewers_per_stream"),
    ("webrtc_max_connections", "webrtc", "max_connections"),
    ("webrtc_direct_media", "webrtc", "direct_media"),
    ("webrtc_threads", "webrtc", "threads"),
];

/// The configuration, and the warnings its loading gave (to log once logging is set up).
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Moves the flat keys of earlier releases into their sections, with a warning for each.
fn move_flat_keys(path: &Path, table: &mut toml::Table, warnings: &mut Vec<String>) -> Result<(), Error> {
    for (old, section, key) in FLAT_KEYS {
        let Some(value) = table.remove(*old) else { continue };
        let entry = table
            .entry(*section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(Error::Config(format!(
                "{}: [{section}] must be a table",
                path.display()
            )));
        };
        if section_table.contains_key(*key) {
            return Err(Error::Config(format!(
                "{}: {old} and {key} in [{section}] are the same key: keep the second",
                path.display()
            )));
        }
        section_table.insert((*key).to_owned(), value);
        warnings.push(format!(
            "{}: the key {old} is deprecated: write it as {key} in [{section}]",
            path.display()
        ));
    }
    Ok(())
}

fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<FileConfig, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read config {}", path.display()), e))?;
    parse_file(&text, path, warnings)
}

/// The text of a config file (named `path` in errors) as its sections' layers.
fn parse_file(text: &str, path: &Path, warnings: &mut Vec<String>) -> Result<FileConfig, Error> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
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
    })?;
    move_flat_keys(path, &mut table, warnings)?;
    let deserializer = toml::Value::Table(table);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        Error::Config(format!("{}: {key}: {}", path.display(), e.inner().message()))
    })
}

/// The error of a section's check: the key, its section, and what is wrong.
fn invalid<S: Section>(invalid: Invalid) -> Error {
    Error::Config(format!("{} (in [{}]): {}", invalid.key, S::NAME, invalid.problem))
}

impl Config {
    /// Flags (and their environment variables) first, then the config file, then defaults.
    pub fn load(global: &GlobalOptions, serve: Option<&ServeOptions>) -> Result<Loaded, Error> {
        let mut warnings = Vec::new();
        let file = match global.config.as_deref() {
            Some(path) => read_file(path, &mut warnings)?,
            None => FileConfig::default(),
        };
        Self::resolve(global, serve, file, warnings)
    }

    /// A config file's text alone (no flags, no environment), as `serve --config` would read it.
    pub fn from_file_text(text: &str) -> Result<Loaded, Error> {
        let mut warnings = Vec::new();
        let file = parse_file(text, Path::new("config.toml"), &mut warnings)?;
        Self::resolve(&GlobalOptions::default(), None, file, warnings)
    }

    fn resolve(
        global: &GlobalOptions,
        serve: Option<&ServeOptions>,
        file: FileConfig,
        warnings: Vec<String>,
    ) -> Result<Loaded, Error> {
        let serve = serve.cloned().unwrap_or_default();
        let config = Config {
            store: global.store.clone().over(file.store).resolve(),
            upstream: global.upstream.clone().over(file.upstream).resolve(),
            log: global.log.clone().over(file.log).resolve(),
            http: serve.http.over(file.http).resolve(),
            auth: serve.auth.over(file.auth).resolve(),
            notifications: serve.notifications.over(file.notifications).resolve(),
            monitoring: serve.monitoring.over(file.monitoring).resolve(),
            webrtc: serve.webrtc.over(file.webrtc).resolve(),
            cluster: serve.cluster.over(file.cluster).resolve(),
        };
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Checks every section; the error names the key at fault and its section.
    pub fn validate(&self) -> Result<(), Error> {
        self.store.validate().map_err(invalid::<Store>)?;
        self.upstream.validate().map_err(invalid::<Upstream>)?;
        self.cluster.validate().map_err(invalid::<Cluster>)?;
        self.http.validate().map_err(invalid::<Http>)?;
        self.auth.validate().map_err(invalid::<Auth>)?;
        if self.auth.mode == AuthSetting::Off && !self.http.listen.ip().is_loopback() {
            return Err(invalid::<Auth>(Invalid {
                key: "mode",
                problem: format!(
                    "off is refused unless the server listens on loopback only (listen is {})",
                    self.http.listen
                ),
            }));
        }
        self.notifications.validate().map_err(invalid::<Notifications>)?;
        self.monitoring.validate().map_err(invalid::<Monitoring>)?;
        self.webrtc.validate().map_err(invalid::<WebRtc>)
    }

    /// What a request may ask of the server.
    pub fn limits(&self) -> controllers::Limits {
        controllers::Limits {
            max_upload_bytes: self.http.max_upload_bytes,
            notification_idle_timeout: Duration::from_secs(self.notifications.idle_timeout_secs),
            record_streams: self.monitoring.record_streams,
            body_idle_timeout: Duration::from_secs(self.http.body_idle_timeout_secs),
            upload_buffer_bytes: usize::try_from(self.http.upload_buffer_bytes).unwrap_or(usize::MAX),
            upload_buffers_total_bytes: usize::try_from(self.http.upload_buffers_total_bytes).unwrap_or(usize::MAX),
        }
    }

    /// How many connections may be open at once.
    pub fn connection_limits(&self) -> controllers::connections::ConnectionLimits {
        controllers::connections::ConnectionLimits {
            per_address: self.http.max_connections_per_ip,
            total: self.http.max_connections,
        }
    }

    /// How routes are guarded (the credentials themselves are the wiring's).
    pub fn access(&self) -> controllers::access::AccessSettings {
        controllers::access::AccessSettings {
            mode: match self.auth.mode {
                AuthSetting::Tokens => controllers::access::AuthMode::Tokens,
                AuthSetting::Off => controllers::access::AuthMode::Off,
            },
            public_read: self.auth.public_read,
            public_playback: self.auth.public_playback,
            allowed_origins: self.auth.allowed_origins.clone(),
            rates: controllers::rate_limits::RateSettings {
                per_token: self.auth.rate_limit_per_second,
                anonymous: self.auth.anon_rate_limit_per_second,
                burst: self.auth.rate_limit_burst,
                sessions_per_minute: self.auth.session_rate_limit_per_minute,
            },
        }
    }

    /// How the sampler watches the server's series.
    pub fn sampler(&self) -> model::monitoring::SamplerConfig {
        model::monitoring::SamplerConfig {
            interval: Duration::from_millis(self.monitoring.sample_interval_ms),
            retention: self.retention_age(),
            detector: self.monitoring.anomaly_detector,
            ..Default::default()
        }
    }

    /// How long samples, anomalies and stream records are kept.
    pub fn retention_age(&self) -> Duration {
        Duration::from_secs(self.monitoring.retention_hours.saturating_mul(3600))
    }

    /// WebRTC playback as configured; ICE binds where HTTP listens (loopback stays loopback, a
    /// LAN address its LAN).
    pub fn webrtc(&self) -> model::webrtc::WebRtcConfig {
        model::webrtc::WebRtcConfig {
            peer: model::webrtc::PeerConfig {
                ice_servers: self
                    .webrtc
                    .ice_servers
                    .iter()
                    .map(|url| model::webrtc::IceServer {
                        urls: vec![url.clone()],
                        username: None,
                        credential: None,
                    })
                    .collect(),
                bind: self.http.listen.ip(),
                direct_media: self.webrtc.direct_media,
                ..Default::default()
            },
            limits: model::webrtc::WebRtcLimits {
                max_streams: self.webrtc.max_streams,
                max_viewers_per_stream: self.webrtc.max_viewers_per_stream,
                max_connections: self.webrtc.max_connections,
            },
            ..Default::default()
        }
    }
}

/// Every section's name, keys and defaults (as JSON values), for `--help` and the tests.
pub fn described_sections() -> Vec<(&'static str, &'static [&'static str], serde_json::Value)> {
    fn describe<S: Section>() -> (&'static str, &'static [&'static str], serde_json::Value) {
        (
            S::NAME,
            S::KEYS,
            serde_json::to_value(S::default()).expect("a section serializes"),
        )
    }
    vec![
        describe::<Store>(),
        describe::<Upstream>(),
        describe::<Log>(),
        describe::<Http>(),
        describe::<Auth>(),
        describe::<Notifications>(),
        describe::<Monitoring>(),
        describe::<WebRtc>(),
        describe::<Cluster>(),
    ]
}

/// The command line with each key's default at the end of its help, taken from the sections'
/// own defaults (so `--help` cannot disagree with them).
pub fn with_defaults_in_help(mut command: clap::Command) -> clap::Command {
    for (_, keys, defaults) in described_sections() {
        for key in keys {
            let shown = match &defaults[*key] {
                serde_json::Value::Null => continue,
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Array(items) if items.is_empty() => "none".to_owned(),
                other => other.to_string(),
            };
            let annotate = |arg: clap::Arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            };
            if command.get_arguments().any(|arg| arg.get_id() == *key) {
                command = command.mut_arg(*key, annotate);
            } else if command
                .find_subcommand("serve")
                .is_some_and(|serve| serve.get_arguments().any(|arg| arg.get_id() == *key))
            {
                command = command.mut_subcommand("serve", |serve| serve.mut_arg(*key, annotate));
            }
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn load_file(text: &str) -> Result<Loaded, Error> {
        let config = file(text);
        let global = GlobalOptions {
            config: Some(config.path().to_owned()),
            ..Default::default()
        };
        Config::load(&global, Some(&ServeOptions::default()))
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let config = file(
            "[store]\ndata_dir = \"/srv/ipfs\"\n[http]\nlisten = \"127.0.0.1:9000\"\nmax_upload_bytes = 5\n\
             [log]\nformat = \"json\"\n[monitoring]\nmax_stream_records = 10\nrecord_streams = false\n\
             instrumentation = false\n[webrtc]\ndirect_media = false\nmax_streams = 7\n",
        );
        let mut global = GlobalOptions {
            config: Some(config.path().to_owned()),
            ..Default::default()
        };
        global.store.data_dir = Some("/flag/dir".into());
        let mut serve = ServeOptions::default();
        serve.monitoring.max_stream_records = Some(20);
        serve.webrtc.max_streams = Some(9);
        let loaded = Config::load(&global, Some(&serve)).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let loaded = loaded.config;
        assert_eq!(loaded.monitoring.max_stream_records, 20);
        assert_eq!(loaded.webrtc.max_streams, 9);
        assert!(!loaded.monitoring.record_streams && !loaded.monitoring.instrumentation && !loaded.webrtc.direct_media);
        assert_eq!(loaded.store.data_dir, std::path::PathBuf::from("/flag/dir"));
        assert_eq!(
            loaded.http.listen,
            "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(loaded.http.max_upload_bytes, 5);
        assert_eq!(loaded.log.format, LogFormat::Json);
        assert_eq!(
            Config::load(&GlobalOptions::default(), None).unwrap().config,
            Config::default()
        );
    }

    #[test]
    fn every_key_is_settable_by_flag_and_environment() {
        let command = with_defaults_in_help(crate::cli::Cli::command());
        let serve = command.find_subcommand("serve").unwrap();
        for (section, keys, _) in described_sections() {
            for key in keys {
                let arg = command
                    .get_arguments()
                    .chain(serve.get_arguments())
                    .find(|arg| arg.get_id() == *key)
                    .unwrap_or_else(|| panic!("{key} in [{section}] has no flag"));
                assert!(arg.get_long().is_some(), "{key} in [{section}] has no long flag");
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{key} in [{section}] has no variable"));
                // The variable is the flag in capitals: --webrtc-max-streams, IPFS_STREAM_WEBRTC_MAX_STREAMS.
                // A repeatable flag's variable holds a list, named in the plural: --gateway,
                // IPFS_STREAM_GATEWAYS.
                let flag = arg.get_long().unwrap().to_uppercase().replace('-', "_");
                let expected = if arg.get_value_delimiter().is_some() && !flag.ends_with('S') {
                    format!("IPFS_STREAM_{flag}S")
                } else {
                    format!("IPFS_STREAM_{flag}")
                };
                assert_eq!(env.to_string_lossy(), expected, "{key} in [{section}]");
            }
        }
    }

    #[test]
    fn flat_keys_of_earlier_releases_still_work_with_a_warning() {
        let loaded = load_file("max_upload_bytes = 5\nwebrtc_threads = 3\nlog_format = \"json\"\n").unwrap();
        assert_eq!(loaded.config.http.max_upload_bytes, 5);
        assert_eq!(loaded.config.webrtc.threads, 3);
        assert_eq!(loaded.config.log.format, LogFormat::Json);
        assert_eq!(loaded.warnings.len(), 3);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("webrtc_threads is deprecated: write it as threads in [webrtc]")),
            "{:?}",
            loaded.warnings
        );
        let both = load_file("webrtc_threads = 3\n[webrtc]\nthreads = 2\n")
            .err()
            .unwrap()
            .to_string();
        assert!(both.contains("webrtc_threads and threads in [webrtc]"), "{both}");
    }

    #[test]
    fn a_file_text_alone_gives_its_values_over_the_defaults() {
        let loaded = Config::from_file_text("[http]\nmax_connections = 5\n").unwrap();
        assert_eq!(loaded.config.http.max_connections, 5);
        assert_eq!(loaded.config.http.max_connections_per_ip, 256);
        let Err(Error::Config(message)) = Config::from_file_text("[http]\nmax_connections = \"x\"\n") else {
            panic!("a string is not a count");
        };
        assert!(message.contains("max_connections"), "{message}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[http]\nlisten = \"nowhere\"", "http.listen"),
            ("[http]\nmax_upload_bytes = 0", "max_upload_bytes (in [http])"),
            (
                "[monitoring]\nmax_stream_records = 0",
                "max_stream_records (in [monitoring])",
            ),
            (
                "[monitoring]\nanomaly_detector = \"psychic\"",
                "monitoring.anomaly_detector",
            ),
            ("[webrtc]\nthreads = 0", "threads (in [webrtc])"),
            ("[webrtc]\nthreads = 65", "threads (in [webrtc])"),
            ("[webrtc]\nice_servers = [\"http://x\"]", "ice_servers (in [webrtc])"),
            (
                "[store]\nkubo_api = \"https://example.invalid\"",
                "kubo_api (in [store])",
            ),
            ("[store]\nkubo_api = \"not a url\"", "store.kubo_api"),
            (
                "[store]\ndatabase_url = \"mysql://u:hunter2@db/x\"",
                "database_url (in [store])",
            ),
            ("[store]\ndatabase_url = \"postgres://db.example\"", "names no database"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("colour = \"blue\"", "colour"),
            ("[webrtc]\ncolour = \"blue\"", "colour"),
            ("[http]\nmax_upload_bytes = \"lots\"", "http.max_upload_bytes"),
            ("[http]\nworkers = 0", "workers (in [http])"),
            ("[http]\nworkers = 65", "workers (in [http])"),
            // A flat key of an earlier release is named as it was written.
            ("webrtc_threads = 0", "threads (in [webrtc])"),
        ];
        for (text, key) in cases {
            let err = load_file(text).err().unwrap().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(!err.contains("hunter2"), "a password stays out of messages: {err}");
        }
    }

    #[test]
    fn the_documented_block_and_help_name_every_key() {
        let page = include_str!("../../../docs/configuration.md");
        let block = page
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a TOML block in docs/configuration.md");
        let mut section = "";
        let mut written = Vec::new();
        for line in block.lines() {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            } else if let Some((key, _)) = line.split_once(" = ") {
                written.push(format!("{section}.{}", key.trim()));
            }
        }
        let mut help = with_defaults_in_help(crate::cli::Cli::command());
        let mut text = help.render_long_help().to_string();
        text += &help
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        let serve = help.find_subcommand("serve").unwrap();
        for (name, keys, _) in described_sections() {
            for key in keys {
                assert!(
                    written.contains(&format!("{name}.{key}")),
                    "docs/configuration.md's block lacks {key} in [{name}]"
                );
                let flag = help
                    .get_arguments()
                    .chain(serve.get_arguments())
                    .find(|arg| arg.get_id() == *key)
                    .and_then(|arg| arg.get_long().map(str::to_owned))
                    .unwrap();
                assert!(text.contains(&format!("--{flag}")), "--help lacks --{flag}");
            }
        }
        let declared: usize = described_sections().iter().map(|(_, keys, _)| keys.len()).sum();
        assert_eq!(
            written.len(),
            declared,
            "docs/configuration.md names a key no section declares: {written:?}"
        );
    }

    #[test]
    fn help_shows_the_sections_defaults() {
        let mut command = with_defaults_in_help(crate::cli::Cli::command());
        let serve = command.find_subcommand_mut("serve").unwrap().render_help().to_string();
        assert!(serve.contains("[default: 127.0.0.1:8080]"), "{serve}");
        assert!(serve.contains("[default: contextual]"), "{serve}");
        assert!(serve.contains("[default: 10737418240]"), "{serve}");
    }
}
