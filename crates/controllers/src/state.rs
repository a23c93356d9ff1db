//! What the handlers share: the model's services, behind their traits.

use std::sync::Arc;

use model::content::ContentService;

/// The services handlers call; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub content: Arc<dyn ContentService>,
}

impl AppState {
    pub fn new(content: Arc<dyn ContentService>) -> Self {
        Self { content }
    }
}
