//! The HTTP face of ipfs-stream (actix-web): thin handlers that parse, call the model's services
//! and shape the reply. No SQL here and no storage details: the model's traits are all it sees.
//!
//! ```
//! use std::sync::Arc;
//! use model::content::{ContentNode, MemoryBlockStore, MemoryContentRepository};
//! use model::stream_records::MockStreamMetrics;
//! use model::notifications::{MemoryNotificationRepository, NotificationHub};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let content = Arc::new(ContentNode::new(
//!     Arc::new(MemoryBlockStore::new()),
//!     Arc::new(MemoryContentRepository::new()),
//! ));
//! let hub = Arc::new(NotificationHub::start(Arc::new(MemoryNotificationRepository::default()), 1000));
//! let state = controllers::AppState::new(content, Arc::new(MockStreamMetrics::new()), hub);
//! let _app = controllers::app(state.clone(), true);
//! # }
//! ```

pub mod access;
pub mod access_guard;
pub mod auth_api;
pub mod batched_ws;
pub mod bidirectional;
pub mod connections;
pub mod content_api;
pub mod content_path;
pub mod dashboard;
pub mod embedded;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod health;
pub mod home;
pub mod html_errors;
pub mod kubo_rpc;
pub mod metering;
pub mod monitoring_api;
pub mod notifications_ws;
pub mod openapi;
pub mod player;
pub mod prometheus_metrics;
pub mod range;
pub mod rate_limits;
pub mod rechunk;
pub mod routes;
pub mod sse;
pub mod state;
pub mod stream_records_api;
pub mod upload;
pub mod webrtc_api;
pub mod webrtc_signaling;
pub mod whep;
pub mod ws;

pub use error::ApiError;
pub use state::{AppState, Limits};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};

/// The server's application: every route, behind the access guard; with `instrumented`, every
/// request counted for `/metrics` and the sampler.
pub fn app(
    state: AppState,
    instrumented: bool,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(actix_web::middleware::from_fn(access_guard::guard))
        .wrap(actix_web::middleware::from_fn(html_errors::for_browsers))
        .wrap(actix_web::middleware::Condition::new(
            instrumented,
            actix_web::middleware::from_fn(prometheus_metrics::record_requests),
        ))
        .configure(move |cfg| configure(cfg, state))
}

/// Registers every route of the server (the table in [`routes`]) on an actix-web app, and JSON
/// errors for unknown routes (JSON bodies go through `extract::Json`, query strings through
/// `extract::Checked`).
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state))
        .configure(routes::register)
        .default_service(web::to(error::unknown_route));
}
