//! Adapters that implement the model's ports: the database (SQLite, or PostgreSQL shared by
//! several instances; sqlx, migrations in `migrations/`), the filesystem block store, the Kubo RPC block store, and trustless gateways as upstreams.
//!
//! ```no_run
//! # async fn open() -> Result<(), persistence::Error> {
//! let dir = std::path::Path::new("./ipfs-stream-data");
//! let pool = persistence::database::open(&dir.join("ipfs-stream.db")).await?;
//! let records = persistence::SqlContentRepository::new(pool);
//! let blocks = persistence::FsBlockStore::open(dir).await?;
//! # let _ = (records, blocks);
//! # Ok(()) }
//! ```

pub mod access_tickets;
pub mod access_tokens;
mod block_locations;
pub mod cached_blocks;
pub mod content_repository;
pub mod database;
pub mod error;
pub mod fs_blocks;
pub mod gateway_upstream;
pub mod kubo;
pub mod metrics_history;
pub mod notifications;
pub mod pack_index;
pub mod peer_events;
pub mod stream_directory;
pub mod stream_records;

pub use access_tickets::SqlTickets;
pub use access_tokens::SqlTokens;
pub use cached_blocks::SqlCachedBlocks;
pub use content_repository::SqlContentRepository;
pub use error::Error;
pub use fs_blocks::FsBlockStore;
pub use gateway_upstream::HttpGateway;
pub use kubo::KuboBlockStore;
pub use metrics_history::SqlMetricsHistory;
pub use notifications::SqlNotifications;
pub use peer_events::PgPeerEvents;
pub use stream_directory::SqlStreamDirectory;
pub use stream_records::SqlStreamRecords;
