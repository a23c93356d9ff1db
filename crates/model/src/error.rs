//! The model's one error type.

use cid::Cid;

/// Everything that can go wrong in the model. Adapters convert their own errors into
/// [`Error::Store`] (or a more precise variant) at their edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that is not a CID.
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid { input: String, reason: String },
    /// A CID whose codec this server does not read.
    #[error("unsupported codec 0x{codec:x} in {cid} (supported: dag-pb, raw)")]
    UnsupportedCodec { cid: Cid, codec: u64 },
    /// A CID whose multihash function this server does not compute.
    #[error("unsupported hash function 0x{code:x} in {cid} (supported: sha2-256, sha2-512, blake3, identity)")]
    UnsupportedHash { cid: Cid, code: u64 },
    /// No block with this CID in the store.
    #[error("block not found: {0}")]
    NotFound(Cid),
    /// A path segment that names nothing in its directory.
    #[error("no link named {name:?} under {parent}")]
    NoSuchPath { parent: Cid, name: String },
    /// A block whose bytes do not hash to its CID.
    #[error("block {0} does not match its CID (corrupted or forged data)")]
    HashMismatch(Cid),
    /// A block that is not valid dag-pb/UnixFS.
    #[error("malformed block {cid}: {reason}")]
    MalformedBlock { cid: Cid, reason: String },
    /// The operation needs a file but got something else (or the reverse).
    #[error("{cid} is a {actual}, not a {expected}")]
    WrongKind {
        cid: Cid,
        expected: &'static str,
        actual: &'static str,
    },
    /// A byte range that starts past the end of the content.
    #[error("range start {start} is past the end of {cid} ({size} bytes)")]
    RangeNotSatisfiable { cid: Cid, start: u64, size: u64 },
    /// Options given to an import that make no sense.
    #[error("invalid import option {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },
    /// A CAR stream that cannot be imported.
    #[error("invalid CAR: {0}")]
    InvalidCar(String),
    /// A DAG that lacks blocks it links to (boxed: two CIDs would make every `Result` of the model large).
    #[error("incomplete DAG under {root}: block {missing} is missing")]
    IncompleteDag { root: Box<Cid>, missing: Box<Cid> },
    /// An input stream that failed while it was read.
    #[error("input failed: {0}")]
    Input(String),
    /// An input stream that sent nothing for this long, and was given up.
    #[error("input stalled: nothing received for {} s", .0.as_secs_f64())]
    InputStalled(std::time::Duration),
    /// An input larger than the limit the caller set.
    #[error("input exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The operation is not offered by this backend.
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    /// Media that cannot be played: an unsupported codec or container (named), or corrupt bytes.
    #[error("{0}")]
    Media(#[from] crate::media::MediaError),
    /// No stream or connection with this id.
    #[error("{kind} {id:?} not found")]
    UnknownId { kind: &'static str, id: String },
    /// A per-client or per-stream limit was reached; retry later or elsewhere.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// A request this server understands but does not carry out (an ICE restart, for one).
    #[error("{0}")]
    Unprocessable(String),
    /// A name already taken (a token's, say).
    #[error("{0}")]
    Conflict(String),
    /// The server as a whole is at capacity.
    #[error("at capacity: {0}")]
    AtCapacity(String),
    /// The store's disk (or its database's) is full: nothing of the operation was kept.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// No upstream gateway could supply a block the local store lacks (each one's reason).
    #[error("no upstream could supply {cid}: {reason}")]
    Unreachable { cid: Cid, reason: String },
    /// A failure in a storage adapter (disk, database, remote node).
    #[error("store error: {0}")]
    Store(String),
    /// A task the operation ran on panicked or was cancelled: a fault of this server, which the
    /// same request would meet again, so never retried.
    #[error("{task} task failed: {reason}")]
    Task { task: &'static str, reason: String },
}

impl Error {
    /// The failure of the task named `task` (hashing, a peer's, a block write, ...).
    pub fn task(task: &'static str, error: impl std::fmt::Display) -> Self {
        Error::Task {
            task,
            reason: error.to_string(),
        }
    }
}

impl Error {
    /// A failure that may pass if the same request is made again: a storage adapter's (a disk
    /// out of file handles for a moment, a remote node that timed out). What the content itself
    /// says (not found, corrupt, malformed) stays true.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(_) | Error::Unreachable { .. })
    }
}

/// The model's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_task_is_its_own_error_and_never_transient() {
        let panicked = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let error = Error::task("hashing", panicked);
        assert!(matches!(error, Error::Task { task: "hashing", .. }));
        assert!(error.to_string().starts_with("hashing task failed: "), "{error}");
        assert!(!error.is_transient());
        assert!(Error::Store("disk busy".into()).is_transient());
        let cid = crate::content::Block::encode(cid::Version::V1, crate::content::block::RAW, "x".into());
        assert!(
            Error::Unreachable {
                cid: *cid.cid(),
                reason: "timed out".into()
            }
            .is_transient()
        );
    }
}
