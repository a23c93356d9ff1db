//! The core of ipfs-stream: content addressed the IPFS way, with no HTTP and no SQL.
//!
//! The model owns the ports (traits) its adapters implement — [`content::BlockStore`] for blocks,
//! [`content::ContentRepository`] for records — and the services the faces call, chiefly
//! [`content::ContentService`]. In-memory implementations of the ports live beside them.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use futures::{stream, TryStreamExt};
//! use model::content::{
//!     AddRequest, ByteRange, ContentNode, ContentService, MemoryBlockStore, MemoryContentRepository,
//! };
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let node = ContentNode::new(Arc::new(MemoryBlockStore::new()), Arc::new(MemoryContentRepository::new()));
//! let input = stream::iter([Ok(Bytes::from_static(b"hello world\n"))]);
//! let added = node.add(Box::pin(input), AddRequest::default()).await.unwrap();
//! assert_eq!(added.cid.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
//!
//! let bytes: Vec<_> = node.read(&added.cid, ByteRange::new(6, Some(5))).await.unwrap().try_collect().await.unwrap();
//! assert_eq!(bytes.concat(), b"world");
//! # });
//! ```

pub mod access;
pub mod anomaly;
pub mod batch;
pub mod clock;
pub mod content;
pub mod error;
pub mod faults;
pub mod media;
pub mod monitoring;
pub mod notifications;
pub mod stream_records;
pub mod stream_session;
pub mod webrtc;

pub use error::{Error, Result};
