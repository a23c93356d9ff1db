//! The HTTP face of ipfs-stream (actix-web): thin handlers that parse, call the model's services
//! and shape the reply. No SQL here and no storage details: the model's traits are all it sees.
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::App;
//! use model::content::{ContentNode, MemoryBlockStore, MemoryContentRepository};
//!
//! let content = Arc::new(ContentNode::new(
//!     Arc::new(MemoryBlockStore::new()),
//!     Arc::new(MemoryContentRepository::new()),
//! ));
//! let state = controllers::AppState::new(content);
//! let _app = App::new().configure(|cfg| controllers::configure(cfg, state.clone()));
//! ```

pub mod health;
pub mod state;

pub use state::AppState;

use actix_web::web;

/// Registers every route of the server on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state)).configure(health::routes);
}
