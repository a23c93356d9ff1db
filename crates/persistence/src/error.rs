//! Errors of the adapters, converted to the model's error at the edge.

/// What can fail in an adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("block store at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("Kubo RPC {endpoint}: {message}")]
    Kubo { endpoint: String, message: String },
    #[error("stored record is invalid: {0}")]
    InvalidRecord(String),
}

impl From<Error> for model::Error {
    fn from(e: Error) -> Self {
        model::Error::Store(e.to_string())
    }
}

pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}
