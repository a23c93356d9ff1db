//! `ipfs-stream`: stores content the IPFS way and streams it.

use clap::{CommandFactory, FromArgMatches};
use ipfs_stream::cli::{CarCommand, Cli, Command, PinCommand, RepoCommand, TokenCommand};
use ipfs_stream::config::{Config, LogFormat};
use ipfs_stream::error::Error;
use ipfs_stream::{commands, config, process, serve, simulate, tokens, wiring};
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
    // A log line that cannot be written (the reader of stderr went away) is lost, not reported on
    // stderr again: that report panics, in whichever task logged, the SIGTERM handler's included.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli, config: Config) -> Result<bool, Error> {
    if let Command::Openapi = cli.command {
        let json = serde_json::to_string_pretty(&controllers::openapi::document()).expect("the document serializes");
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
            let monitoring = serve::Monitoring {
                sampler: config.sampler(),
                enabled: config.monitoring.instrumentation,
            };
            serve::run(services, &config, monitoring).await?
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
        Command::Token { action } => match action {
            TokenCommand::Create {
                scopes,
                ttl,
                name,
                quiet,
            } => tokens::create(&services.tokens, &scopes, ttl.as_deref(), name, quiet).await?,
            TokenCommand::Ls => tokens::list(&services.tokens).await?,
            TokenCommand::Revoke { name_or_id } => tokens::revoke(&services.tokens, &name_or_id).await?,
        },
    }
    Ok(true)
}

fn main() -> std::process::ExitCode {
    let matches = config::with_defaults_in_help(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let serve = match &cli.command {
        Command::Serve(options) => Some(options.as_ref()),
        _ => None,
    };
    let config::Loaded { config, warnings } = match Config::load(&cli.global, serve) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if serve.is_some() {
        process::limit_malloc_arenas();
    }
    init_tracing(config.log.format, if serve.is_some() { "info" } else { "warn" });
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match actix_web::rt::System::new().block_on(run(cli, config)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
