//! The HTTP face of ipfs-stream (actix-web): thin handlers that parse, call the model's services
//! and shape the reply. No SQL here and no storage details: the model's traits are all it sees.
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::App;
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
//! let _app = App::new().configure(|cfg| controllers::configure(cfg, state.clone()));
//! # }
//! ```

pub mod bidirectional;
pub mod content_api;
pub mod content_path;
pub mod dashboard;
pub mod embedded;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod health;
pub mod kubo_rpc;
pub mod metering;
pub mod monitoring_api;
pub mod notifications_ws;
pub mod openapi;
pub mod player;
pub mod prometheus_metrics;
pub mod range;
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

use actix_web::web;

/// Registers every route of the server (the table in [`routes`]) on an actix-web app, and JSON
/// errors for unknown routes (JSON bodies go through `extract::Json`, query strings through
/// `extract::Checked`).
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state))
        .configure(routes::register)
        .default_service(web::to(error::unknown_route));
}
