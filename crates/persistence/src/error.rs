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
    #[error("gateway {gateway}: {message}")]
    Gateway { gateway: String, message: String },
    #[error("database URL {0} names no database this server speaks (postgres:// or sqlite://)")]
    UnsupportedUrl(String),
    #[error("stored record is invalid: {0}")]
    InvalidRecord(String),
}

impl Error {
    /// Whether the failure is a full disk: ENOSPC or EDQUOT from the filesystem, SQLITE_FULL from
    /// the database.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            }
            Error::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| code == "13"),
            _ => false,
        }
    }
}

impl From<Error> for model::Error {
    fn from(e: Error) -> Self {
        if e.is_storage_full() {
            return model::Error::StorageFull(e.to_string());
        }
        model::Error::Store(e.to_string())
    }
}

pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let full = io_error(
            std::path::Path::new("blocks/ab/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(model::Error::from(full), model::Error::StorageFull(m) if m.contains("blocks/ab/x")));
        let other = io_error(std::path::Path::new("x"), std::io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(model::Error::from(other), model::Error::Store(_)));
    }
}
