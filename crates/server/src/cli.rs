//! The command line: global options and subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Store content the IPFS way and stream it.
#[derive(Parser, Debug)]
#[command(name = "ipfs-stream", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes. Each falls back to the config file, then to its default.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOptions {
    /// A TOML config file (keys: data_dir, kubo_api, log_format, listen, max_upload_bytes,
    /// notification_idle_timeout_secs, notification_history, record_streams, sample_interval_ms,
    /// metrics_retention_hours, max_stream_records, anomaly_detector, allow_fault_injection,
    /// instrumentation, webrtc_ice_servers, webrtc_max_streams, webrtc_max_viewers_per_stream,
    /// webrtc_max_connections, webrtc_direct_media, webrtc_threads).
    #[arg(long, global = true, env = "IPFS_STREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store and the database [default: ./ipfs-stream-data].
    #[arg(long, global = true, env = "IPFS_STREAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep blocks in a Kubo node reached over its RPC API (e.g. http://127.0.0.1:5001) instead of
    /// the embedded store.
    #[arg(long, global = true, env = "IPFS_STREAM_KUBO_API")]
    pub kubo_api: Option<String>,
    /// Log format on stderr [default: pretty].
    #[arg(long, global = true, env = "IPFS_STREAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeOptions),
    /// Add a file (or stdin with `-`); prints `added <CID> <name>`.
    Add {
        /// File to add, or `-` for standard input.
        path: PathBuf,
        /// CID version: 0 (Kubo's default) or 1 (raw leaves unless --raw-leaves=false).
        #[arg(long, default_value_t = 0)]
        cid_version: u8,
        /// Store leaves as raw blocks.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        raw_leaves: Option<bool>,
        /// Chunker: size-N, N from 1024 to 1048576.
        #[arg(long, default_value = "size-262144")]
        chunker: String,
        /// Print only the CID.
        #[arg(short, long)]
        quiet: bool,
        /// Pin the added content.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        pin: bool,
    },
    /// Write a file's bytes to stdout.
    Cat {
        /// CID, optionally followed by a path: CID/dir/file.
        path: String,
        /// First byte to write.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes to write at most.
        #[arg(long)]
        length: Option<u64>,
    },
    /// List a directory: CID, size, name per line.
    Ls {
        /// CID, optionally followed by a path.
        path: String,
    },
    /// Pins: content kept by garbage collection.
    Pin {
        #[command(subcommand)]
        action: PinCommand,
    },
    /// Store maintenance.
    Repo {
        #[command(subcommand)]
        action: RepoCommand,
    },
    /// Print the OpenAPI document of the HTTP API (what `/openapi.json` serves).
    Openapi,
    /// Drive a running server (on this machine) with synthetic viewers: adds media, then HTTP range,
    /// WebSocket and SSE viewers join and leave at the media's bitrates; can inject faults.
    Simulate(SimulateOptions),
    /// CAR v1 archives.
    Car {
        #[command(subcommand)]
        action: CarCommand,
    },
}

/// Options of the server. Each falls back to the config file, then to its default.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeOptions {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "IPFS_STREAM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Largest upload accepted, in bytes; larger gets 413 and stores nothing [default: 10 GiB].
    #[arg(long, env = "IPFS_STREAM_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Seconds a notification connection may stay silent before it is closed [default: 300].
    #[arg(long, env = "IPFS_STREAM_NOTIFICATION_IDLE_TIMEOUT")]
    pub notification_idle_timeout: Option<u64>,
    /// Notifications kept in the history, per type [default: 1000].
    #[arg(long, env = "IPFS_STREAM_NOTIFICATION_HISTORY")]
    pub notification_history: Option<u64>,
    /// Record every stream in the streaming metrics [default: true].
    #[arg(long, env = "IPFS_STREAM_RECORD_STREAMS", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub record_streams: Option<bool>,
    /// Milliseconds between samples of the server's series, 50 to 60000 [default: 1000].
    #[arg(long, env = "IPFS_STREAM_SAMPLE_INTERVAL_MS")]
    pub sample_interval_ms: Option<u64>,
    /// Hours of samples, anomalies and stream records kept [default: 48].
    #[arg(long, env = "IPFS_STREAM_METRICS_RETENTION_HOURS")]
    pub metrics_retention_hours: Option<u64>,
    /// Stream records kept at most; the oldest go first [default: 1000000].
    #[arg(long, env = "IPFS_STREAM_MAX_STREAM_RECORDS")]
    pub max_stream_records: Option<u64>,
    /// Detector run on every sampled series: contextual, relative_entropy or windowed_gaussian [default: contextual].
    #[arg(long, env = "IPFS_STREAM_ANOMALY_DETECTOR")]
    pub anomaly_detector: Option<String>,
    /// Allow `POST /api/v1/faults` to inject store latency (for drills and the simulator) [default: false].
    #[arg(long, env = "IPFS_STREAM_ALLOW_FAULT_INJECTION", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_fault_injection: Option<bool>,
    /// Count requests and streams for /metrics, sample them and detect anomalies (the stream
    /// records have their own switch, --record-streams) [default: true].
    #[arg(long, env = "IPFS_STREAM_INSTRUMENTATION", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub instrumentation: Option<bool>,
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Pin a CID (and its DAG).
    Add { cid: String },
    /// Unpin a CID.
    Rm { cid: String },
    /// List pinned CIDs.
    Ls,
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Rehash every block; name the corrupted ones (exit code 1 if any).
    Verify,
    /// Delete every block not reachable from a pin.
    Gc,
}

#[derive(Subcommand, Debug)]
pub enum CarCommand {
    /// Write the DAG under a CID to stdout as a CAR.
    Export { cid: String },
    /// Import a CAR file (or stdin with `-`); pins its roots.
    Import { path: PathBuf },
}

/// Options of `simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateOptions {
    /// The server to drive; loopback only (127.0.0.1, [::1] or localhost).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Viewers at the peak, 1 to 2000.
    #[arg(long, default_value_t = 20)]
    pub viewers: u32,
    /// Seconds the simulation lasts, 1 to 3600.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Media items added, 1 to 16.
    #[arg(long, default_value_t = 4)]
    pub media: u32,
    /// Share of viewing sessions that drop abruptly mid-stream, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    pub drop_rate: f64,
    /// Inject this much store latency (ms) once, `--fault-at` seconds in (needs a server started
    /// with --allow-fault-injection).
    #[arg(long)]
    pub fault_latency_ms: Option<u64>,
    /// Seconds into the run when the fault starts.
    #[arg(long, default_value_t = 30)]
    pub fault_at: u64,
    /// Seconds the fault lasts.
    #[arg(long, default_value_t = 10)]
    pub fault_duration: u64,
    /// Seed of the random choices, for repeatable runs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
