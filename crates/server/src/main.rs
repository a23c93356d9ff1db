//! `ipfs-stream`: stores content the IPFS way and streams it.

mod cli;
mod commands;
mod config;
mod error;
mod process;
mod serve;
mod simulate;
mod wiring;

use clap::Parser;
use cli::{CarCommand, Cli, Command, LogFormat, PinCommand, RepoCommand};
use config::Config;
use error::Error;
use tracing_subscriber::EnvFilter;

/// webrtc-rs logs routine ICE and DTLS events as warnings (a check from a candidate not yet
/// signalled, a replaced interceptor); our own logs say what matters about a connection.
const WEBRTC_LOGS: &str =
    "rtc=error,rtc_ice=error,rtc_dtls=error,rtc_interceptor=error,rtc_srtp=error,rtc_sctp=error,webrtc=error";

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{default_level},{WEBRTC_LOGS}")));
    // Colours for a terminal only: a log file or journal gets plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli, config: Config) -> Result<bool, Error> {
    if let Command::Openapi = cli.command {
        let json = controllers::openapi::document()
            .to_pretty_json()
            .expect("the document serializes");
        println!("{json}");
        return Ok(true);
    }
    if let Command::Simulate(options) = cli.command {
        simulate::run(options).await?;
        return Ok(true);
    }
    let mode = if matches!(cli.command, Command::Serve(_)) {
        wiring::Mode::Serving
    } else {
        wiring::Mode::Command
    };
    let services = wiring::build(&config, mode).await?;
    match cli.command {
        Command::Serve(_) => {
            let limits = controllers::Limits {
                max_upload_bytes: config.max_upload_bytes,
                notification_idle_timeout: std::time::Duration::from_secs(config.notification_idle_timeout_secs),
                record_streams: config.record_streams,
            };
            let detector =
                model::anomaly::DetectorKind::parse(&config.anomaly_detector).expect("validated with the config");
            let sampler = model::monitoring::SamplerConfig {
                interval: std::time::Duration::from_millis(config.sample_interval_ms),
                retention: std::time::Duration::from_secs(config.metrics_retention_hours * 3600),
                detector,
                ..Default::default()
            };
            let monitoring = serve::Monitoring {
                sampler,
                enabled: config.instrumentation,
            };
            let webrtc = model::webrtc::WebRtcConfig {
                peer: model::webrtc::PeerConfig {
                    ice_servers: config
                        .webrtc_ice_servers
                        .iter()
                        .map(|url| model::webrtc::IceServer {
                            urls: vec![url.clone()],
                            username: None,
                            credential: None,
                        })
                        .collect(),
                    // ICE binds where HTTP listens: loopback stays loopback, a LAN address its LAN.
                    bind: config.listen.ip(),
                    direct_media: config.webrtc_direct_media,
                    ..Default::default()
                },
                limits: model::webrtc::WebRtcLimits {
                    max_streams: config.webrtc_max_streams,
                    max_viewers_per_stream: config.webrtc_max_viewers_per_stream,
                    max_connections: config.webrtc_max_connections,
                },
                ..Default::default()
            };
            serve::run(
                services,
                config.listen,
                limits,
                monitoring,
                webrtc,
                config.webrtc_threads,
            )
            .await?
        }
        Command::Add {
            path,
            cid_version,
            raw_leaves,
            chunker,
            quiet,
            pin,
        } => {
            let args = commands::AddArgs {
                path: &path,
                cid_version,
                raw_leaves,
                chunker: &chunker,
                quiet,
                pin,
            };
            commands::add(&services, args).await?
        }
        Command::Cat { path, offset, length } => commands::cat(&services, &path, offset, length).await?,
        Command::Ls { path } => commands::ls(&services, &path).await?,
        Command::Pin { action } => match action {
            PinCommand::Add { cid } => commands::pin_add(&services, &cid).await?,
            PinCommand::Rm { cid } => commands::pin_rm(&services, &cid).await?,
            PinCommand::Ls => commands::pin_ls(&services).await?,
        },
        Command::Repo { action } => match action {
            RepoCommand::Verify => return commands::repo_verify(&services).await,
            RepoCommand::Gc => commands::repo_gc(&services).await?,
        },
        Command::Openapi | Command::Simulate(_) => unreachable!("answered before the store is opened"),
        Command::Car { action } => match action {
            CarCommand::Export { cid } => commands::car_export(&services, &cid).await?,
            CarCommand::Import { path } => commands::car_import(&services, &path).await?,
        },
    }
    Ok(true)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let serve = match &cli.command {
        Command::Serve(options) => Some(options),
        _ => None,
    };
    let config = match Config::load(&cli.global, serve) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    init_tracing(config.log_format, if serve.is_some() { "info" } else { "warn" });
    match actix_web::rt::System::new().block_on(run(cli, config)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
