//! `ipfs-stream serve`: the HTTP server.

use std::any::Any;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use controllers::connections::ConnectionGate;

use model::monitoring::{Sampler, SamplerConfig};

use actix_web::HttpServer;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::error::Error;
use crate::process::ProcSelf;
use crate::wiring::Services;

/// How long in-flight responses may take to finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How the server watches itself.
pub struct Monitoring {
    pub sampler: SamplerConfig,
    /// Off: no request accounting, no sampler (streams are not metered either: see `Limits`).
    pub enabled: bool,
}

pub async fn run(services: Services, config: &Config, monitoring: Monitoring) -> Result<(), Error> {
    let listen = config.http.listen;
    // Bound before anything else starts: a taken or foreign address stops the server with one line.
    let listener = bind(listen)?;
    let mut webrtc = config.webrtc();
    let webrtc_threads = config.webrtc.threads;
    let access = access_control(&services, config).await?;
    let tls = config
        .http
        .tls_cert
        .as_deref()
        .zip(config.http.tls_key.as_deref())
        .map(crate::tls::server_config)
        .transpose()?;
    match crate::process::raise_open_files_limit() {
        Ok((before, limit)) => {
            tracing::info!(before, limit, "open files limit");
            // Each WebRTC connection holds a socket: past what the limit leaves for them, a new
            // viewer is refused by name rather than the process failing to open a block file, a
            // database handle or an HTTP connection of the ones already served.
            let fitting = crate::process::connections_within(limit);
            if webrtc.limits.max_connections > fitting {
                tracing::warn!(
                    configured = webrtc.limits.max_connections,
                    limit,
                    max_connections = fitting,
                    "webrtc_max_connections lowered to what the open files limit leaves"
                );
                webrtc.limits.max_connections = fitting;
            }
        }
        Err(error) => tracing::warn!(%error, "open files limit not read; webrtc_max_connections left as set"),
    }
    // Peers and playbacks get their own threads, so media never waits on HTTP workers (and the
    // other way round).
    let media_runtime = MediaRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(webrtc_threads)
            .thread_name("webrtc")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the WebRTC runtime", e))?,
    ));
    let webrtc_hub = model::webrtc::WebRtcHub::new(
        services.content.clone(),
        services.hub.clone(),
        services.metrics.clone(),
        services.live.clone(),
        media_runtime.handle(),
        webrtc,
    );
    if let Some(cluster) = &services.cluster {
        webrtc_hub
            .share_streams(cluster.streams.clone(), &cluster.instance, &cluster.name)
            .await?;
    }
    let store_counters = services.content.store_counters();
    let sampler = Sampler::new(
        services.live.clone(),
        Arc::new(ProcSelf::new()),
        services.history.clone(),
        services.hub.clone(),
        monitoring.sampler,
    )
    .with_store_counters(store_counters.clone());
    let (upstreams, cache_budget) = (services.content.remote(), services.content.cache_budget());
    let mut state = controllers::AppState::new(services.content, services.metrics, services.hub)
        .with_limits(config.limits())
        .with_connection_limits(config.connection_limits())
        .with_access(access)
        .with_monitoring(
            services.live,
            services.history,
            sampler.anomalies_raised(),
            store_counters,
        )
        .with_upstreams(upstreams, cache_budget);
    if let Some(faults) = services.faults {
        state = state.with_faults(faults);
    }
    state = state.with_webrtc(Arc::new(webrtc_hub.clone()));
    let sampling = monitoring.enabled.then(|| sampler.spawn());
    let instrumented = monitoring.enabled;
    let gate = state.connections.clone();
    let server = HttpServer::new(move || controllers::app(state.clone(), instrumented))
        .on_connect(move |connection, data| admit(&gate, connection, data))
        .client_request_timeout(Duration::from_millis(config.http.header_timeout_ms))
        .keep_alive(match config.http.keep_alive_secs {
            0 => actix_web::http::KeepAlive::Disabled,
            secs => actix_web::http::KeepAlive::Timeout(Duration::from_secs(secs)),
        })
        .workers(config.http.workers)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        // Signals are ours (below): installed before the address is announced, so a signal sent as
        // soon as the server is up is never missed.
        .disable_signals();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Error::io("installing a SIGTERM handler", e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Error::io("installing a SIGINT handler", e))?;
    let addresses = server.addrs();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: finishing in-flight responses"),
            _ = interrupt.recv() => tracing::info!("SIGINT: finishing in-flight responses"),
        }
        handle.stop(true).await;
    });
    for address in addresses {
        // Tests and scripts read the bound address (the port may be 0 in the options); one that
        // stopped reading does not stop the server (println! would panic).
        let _ = writeln!(std::io::stdout(), "listening on {scheme}://{address}");
        tracing::info!(%address, "listening");
    }
    let served = server.await;
    if let Some(sampling) = sampling {
        sampling.abort();
    }
    let closed = model::webrtc::WebRtcService::close_all(&webrtc_hub).await;
    tracing::info!(closed, "WebRTC connections closed");
    drop(media_runtime);
    served.map_err(|e| Error::io("server", e))?;
    tracing::info!("stopped");
    Ok(())
}

/// The listening socket (with the backlog actix-web would give it), or why there is none, in
/// words: "address in use", not an OS error number.
fn bind(address: std::net::SocketAddr) -> Result<std::net::TcpListener, Error> {
    use socket2::{Domain, Socket, Type};
    let listen = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(2048)?;
        Ok(socket.into())
    };
    listen().map_err(|error| Error::Listen {
        address,
        reason: match error.kind() {
            std::io::ErrorKind::AddrInUse => "address in use".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "address not available (not an address of this machine)".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_owned(),
            _ => error.to_string(),
        },
    })
}

/// The runtime peers and playbacks run on; shut down without waiting when dropped, also on an
/// early return (a runtime dropped inside async code would panic).
struct MediaRuntime(Option<tokio::runtime::Runtime>);

impl MediaRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("held until dropped").handle().clone()
    }
}

impl Drop for MediaRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A new connection: admitted under the caps (its slot lives in its data, given back when it
/// closes) or shut at once (under TLS this runs after the handshake). Small replies (range requests, JSON) go out without waiting on
/// delayed ACKs.
fn admit(gate: &Arc<ConnectionGate>, connection: &dyn Any, data: &mut actix_web::dev::Extensions) {
    let tcp = connection.downcast_ref::<actix_web::rt::net::TcpStream>().or_else(|| {
        connection
            .downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    let Some(tcp) = tcp else { return };
    let _ = tcp.set_nodelay(true);
    let Ok(peer) = tcp.peer_addr() else { return };
    match gate.admit(peer.ip()) {
        Ok(slot) => {
            data.insert(slot);
        }
        Err(cap) => {
            // Both ways: the dispatcher reads the end at once and the client sees the close.
            tracing::debug!(peer = %peer.ip(), cap = cap.as_str(), "connection over its cap closed");
            let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Access control as configured; with tokens on a data directory that has none, the first
/// `admin` token is made and written beside the data.
async fn access_control(services: &Services, config: &Config) -> Result<controllers::access::AccessControl, Error> {
    let settings = config.access();
    if settings.mode == controllers::access::AuthMode::Off {
        tracing::warn!(
            listen = %config.http.listen,
            "authentication is off: anyone who reaches this address may do everything (origins are still checked)"
        );
        return Ok(controllers::access::AccessControl::new(settings, None));
    }
    if let Some(path) = crate::tokens::write_first_admin(&services.tokens, &config.store.data_dir).await? {
        tracing::info!(path = %path.display(), "first admin token written (readable by its owner only)");
    }
    let access = controllers::access::AccessControl::new(settings, Some(services.tokens.clone()));
    Ok(match &services.cluster {
        Some(cluster) => access.with_ticket_store(cluster.tickets.clone()),
        None => access,
    })
}
