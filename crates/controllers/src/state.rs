//! What the handlers share: the model's services, behind their traits, and request limits.

use std::sync::Arc;

use model::content::ContentService;
use model::metrics::StreamMetrics;

/// Limits on what a request may ask of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest upload accepted, in bytes; larger gets 413 and stores nothing.
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// The services handlers call; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub content: Arc<dyn ContentService>,
    pub metrics: Arc<dyn StreamMetrics>,
    pub limits: Limits,
}

impl AppState {
    pub fn new(content: Arc<dyn ContentService>, metrics: Arc<dyn StreamMetrics>) -> Self {
        Self {
            content,
            metrics,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}
