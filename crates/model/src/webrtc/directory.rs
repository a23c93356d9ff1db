//! The streams of every instance sharing a database. A stream lives on the instance that created
//! it (its playbacks and connections are that process's); the directory lets the others list it
//! and play it: an instance asked for a stream it does not hold builds a local copy from the same
//! spec under the same id (the CIDs play anywhere, their blocks fetched from peers), which lives as
//! long as its viewers.
//!
//! Each instance beats every few seconds; the streams of an instance silent for longer than
//! [`SILENCE`] are marked ended by whichever other instance notices first.

use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::quality::Quality;
use super::service::StreamSpec;
use crate::error::{Error, Result};
use crate::media::playback::BufferSettings;

/// How often an instance beats and reads the directory.
pub const BEAT_EVERY: Duration = Duration::from_secs(2);
/// An instance silent this long is taken for gone, and its streams for ended.
pub const SILENCE: Duration = Duration::from_secs(20);

/// A stream as the directory keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedStream {
    pub stream_id: String,
    /// The key of the instance that created it (its name and this run's tag).
    pub owner: String,
    /// Its name, as shown.
    pub owner_name: String,
    /// What it plays (without the stream's own ICE servers: they may hold credentials).
    pub spec: StreamSpec,
    /// The stream as its instance described it when it was created.
    pub info: Value,
    pub created_at_ms: i64,
}

/// Where the directory is kept (the shared database, in the persistence crate).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StreamDirectory: Send + Sync {
    /// Lists a stream this instance created.
    async fn announce(&self, stream: &SharedStream) -> Result<()>;
    /// Marks a stream ended.
    async fn withdraw(&self, stream_id: &str, at_ms: i64) -> Result<()>;
    /// The streams not ended, oldest first.
    async fn live(&self) -> Result<Vec<SharedStream>>;
    /// One stream, if it is not ended.
    async fn find(&self, stream_id: &str) -> Result<Option<SharedStream>>;
    /// Says this instance is alive.
    async fn beat(&self, at_ms: i64) -> Result<()>;
    /// Marks ended the streams of other instances silent since before `silent_since_ms`; returns
    /// them (each to one caller only).
    async fn reap(&self, silent_since_ms: i64, at_ms: i64) -> Result<Vec<SharedStream>>;
}

/// The stored form of a [`StreamSpec`].
#[derive(Serialize, Deserialize)]
struct StoredSpec {
    cid: String,
    renditions: Vec<(String, String)>,
    quality: String,
    buffer_size: usize,
    prefetch_threshold: f64,
    /// Absent in specs stored before it existed: adaptive, as they were.
    #[serde(default = "adaptive_by_default")]
    adaptive_buffer: bool,
    progressive: bool,
    benchmark: bool,
}

fn adaptive_by_default() -> bool {
    true
}

impl StreamSpec {
    /// The spec as the directory stores it (ICE servers left out).
    pub fn to_stored(&self) -> String {
        let stored = StoredSpec {
            cid: self.cid.to_string(),
            renditions: self
                .renditions
                .iter()
                .map(|(quality, cid)| (quality.as_str().to_owned(), cid.to_string()))
                .collect(),
            quality: self.quality.as_str().to_owned(),
            buffer_size: self.buffer.buffer_size,
            prefetch_threshold: self.buffer.prefetch_threshold,
            adaptive_buffer: self.buffer.adaptive,
            progressive: self.progressive,
            benchmark: self.benchmark,
        };
        serde_json::to_string(&stored).expect("a spec serializes")
    }

    /// A spec [`StreamSpec::to_stored`] wrote.
    pub fn from_stored(text: &str) -> Result<StreamSpec> {
        let invalid = |what: &str| Error::Store(format!("stored stream spec: {what}"));
        let stored: StoredSpec = serde_json::from_str(text).map_err(|e| invalid(&e.to_string()))?;
        let cid = |text: &str| Cid::try_from(text).map_err(|e| invalid(&format!("cid {text:?}: {e}")));
        let quality = |name: &str| Quality::parse(name).ok_or_else(|| invalid(&format!("quality {name:?}")));
        Ok(StreamSpec {
            cid: cid(&stored.cid)?,
            renditions: stored
                .renditions
                .iter()
                .map(|(q, c)| Ok((quality(q)?, cid(c)?)))
                .collect::<Result<_>>()?,
            quality: quality(&stored.quality)?,
            ice_servers: Vec::new(),
            buffer: BufferSettings {
                buffer_size: stored.buffer_size,
                prefetch_threshold: stored.prefetch_threshold,
                adaptive: stored.adaptive_buffer,
            },
            progressive: stored.progressive,
            benchmark: stored.benchmark,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_comes_back_as_it_was_stored_without_its_ice_servers() {
        let cid: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .unwrap();
        let spec = StreamSpec {
            cid,
            renditions: vec![(Quality::Low, cid)],
            quality: Quality::Auto,
            ice_servers: vec![crate::webrtc::IceServer {
                urls: vec!["turn:example.org".into()],
                username: Some("u".into()),
                credential: Some("secret".into()),
            }],
            buffer: BufferSettings {
                buffer_size: 12,
                prefetch_threshold: 0.25,
                adaptive: false,
            },
            progressive: false,
            benchmark: true,
        };
        let stored = spec.to_stored();
        assert!(!stored.contains("secret"));
        let back = StreamSpec::from_stored(&stored).unwrap();
        assert_eq!(
            back,
            StreamSpec {
                ice_servers: Vec::new(),
                ..spec
            }
        );
        assert!(StreamSpec::from_stored("{}").is_err());
    }
}
