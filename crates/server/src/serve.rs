//! `ipfs-stream serve`: the HTTP server.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer};

use crate::error::Error;
use crate::wiring::Services;

/// How long in-flight responses may take to finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(services: Services, listen: SocketAddr, limits: controllers::Limits) -> Result<(), Error> {
    let state = controllers::AppState::new(services.content).with_limits(limits);
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |cfg| controllers::configure(cfg, state))
    })
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .bind(listen)
    .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
    for address in server.addrs() {
        // Tests and scripts read the bound address (the port may be 0 in the options).
        println!("listening on http://{address}");
        tracing::info!(%address, "listening");
    }
    server.run().await.map_err(|e| Error::io("server", e))?;
    tracing::info!("stopped");
    Ok(())
}
