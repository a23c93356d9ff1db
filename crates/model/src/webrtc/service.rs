//! WebRTC playback as a port: [`WebRtcService`], what the faces ask of it (streams of a CID or a
//! ladder of renditions, connections playing them, quality, statistics), and how it is set up
//! ([`WebRtcConfig`], [`WebRtcLimits`]). [`super::hub::WebRtcHub`] implements it.

use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use serde::Serialize;
use tokio::sync::mpsc;

use super::ice::{IceCandidate, IceServer};
use super::peer::{PeerConfig, PeerEvent, PeerStats};
use super::quality::Quality;
use crate::error::Result;
use crate::media::TrackInfo;
use crate::media::playback::{BufferSettings, PlaybackStats};

/// What a stream plays and how.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSpec {
    pub cid: Cid,
    /// Other encodings of the same media, by quality; `cid` is one of them or the only one.
    pub renditions: Vec<(Quality, Cid)>,
    pub quality: Quality,
    /// ICE servers given to this stream's clients (the server's own when empty).
    pub ice_servers: Vec<IceServer>,
    pub buffer: BufferSettings,
    pub progressive: bool,
    /// Keep a per-second record of the stream's counters, shown with the stream.
    pub benchmark: bool,
}

/// A track as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackSummary {
    pub index: usize,
    pub kind: &'static str,
    pub codec: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl From<&TrackInfo> for TrackSummary {
    fn from(track: &TrackInfo) -> Self {
        let video = track.codec.is_video();
        Self {
            index: track.index,
            kind: if video { "video" } else { "audio" },
            codec: track.codec.name(),
            width: video.then_some(track.width),
            height: video.then_some(track.height),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RenditionInfo {
    pub quality: Quality,
    pub cid: String,
    pub size: u64,
    /// Measured while playing; the preset's nominal bitrate before.
    pub bitrate_bps: f64,
}

/// One second of a benchmarked stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchmarkSample {
    pub at_ms: i64,
    pub viewers: usize,
    pub fps: f64,
    pub bitrate_bps: f64,
    pub fill_level: f64,
    pub underflows: u64,
    pub frames_dropped: u64,
}

/// A stream as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamInfo {
    pub stream_id: String,
    pub cid: String,
    pub quality: Quality,
    pub renditions: Vec<RenditionInfo>,
    /// Whether `auto` has renditions to switch between.
    pub adaptable: bool,
    pub tracks: Vec<TrackSummary>,
    pub viewers: usize,
    /// `idle` (no playback yet, or ended), `playing`.
    pub state: &'static str,
    pub buffer_size: usize,
    pub prefetch_threshold: f64,
    pub use_progressive_loading: bool,
    pub created_at_ms: i64,
    /// The instance that holds it, where several share a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The counters of the first rendition's playback, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback: Option<PlaybackStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<Vec<BenchmarkSample>>,
}

/// What to play: a CID (a stream made for this connection) or a created stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Cid(Cid),
    Stream(String),
}

/// A request to play, with the settings a connection may choose.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayRequest {
    pub target: Target,
    pub quality: Option<Quality>,
    /// For a bare CID; a created stream keeps its own.
    pub buffer: Option<BufferSettings>,
    pub progressive: Option<bool>,
}

impl PlayRequest {
    pub fn cid(cid: Cid) -> Self {
        Self {
            target: Target::Cid(cid),
            quality: None,
            buffer: None,
            progressive: None,
        }
    }
}

/// A connection the server offered: the remote answers `sdp`.
#[derive(Debug)]
pub struct Offer {
    pub pc_id: String,
    pub stream_id: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
    pub tracks: Vec<TrackSummary>,
    /// Candidates to trickle and state changes, until the connection closes.
    pub events: mpsc::Receiver<PeerEvent>,
}

/// A connection made from the remote's offer (WHEP).
#[derive(Debug)]
pub struct Answer {
    pub pc_id: String,
    pub stream_id: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
}

/// A connection as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionInfo {
    pub pc_id: String,
    pub stream_id: String,
    pub cid: String,
    pub state: String,
    /// The preset asked for, and the rendition being sent.
    pub quality: Quality,
    pub rendition: Quality,
    pub adaptable: bool,
    pub created_at_ms: i64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
}

/// Everything known of a connection: its playback's counters and its transport's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionStats {
    #[serde(flatten)]
    pub connection: ConnectionInfo,
    pub buffer: PlaybackStats,
    pub transport: PeerStats,
}

/// The result of a quality change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QualityChange {
    pub pc_id: String,
    pub quality: Quality,
    pub rendition: Quality,
    pub adaptable: bool,
}

/// WebRTC across the server, for `/metrics`: gauges now, counters since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WebRtcTotals {
    /// Open connections by the quality of the rendition they are sent.
    pub connections: Vec<(Quality, u64)>,
    /// Streams with a running playback.
    pub streams_playing: u64,
    pub frames_sent_total: u64,
    pub bytes_sent_total: u64,
    pub frames_dropped_total: u64,
    pub underflows_total: u64,
    pub overflows_total: u64,
    pub quality_switches_total: u64,
    /// Mean buffer fill level (0-1) of the running playbacks.
    pub fill_level: f64,
    /// Mean over open connections of the loss TWCC reports (0-1).
    pub packet_loss: f64,
    /// Mean over open connections of the jitter their receivers report, in seconds.
    pub jitter_seconds: f64,
    /// Sum of the open connections' bandwidth estimates, in bits per second.
    pub bandwidth_estimate_bps: f64,
}

/// Limits on WebRTC use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebRtcLimits {
    /// Created streams at once (429 beyond).
    pub max_streams: usize,
    /// Connections per stream (429 beyond).
    pub max_viewers_per_stream: usize,
    /// Connections in all (503 beyond).
    pub max_connections: usize,
}

impl Default for WebRtcLimits {
    fn default() -> Self {
        Self {
            max_streams: 100,
            max_viewers_per_stream: 1000,
            max_connections: 2000,
        }
    }
}

/// How the service is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct WebRtcConfig {
    pub peer: PeerConfig,
    pub limits: WebRtcLimits,
    pub buffer: BufferSettings,
    pub progressive: bool,
    /// How long a WHEP answer waits for ICE candidates before it goes out (the rest trickle).
    pub gather_timeout: Duration,
    /// A connection not connected by then is closed.
    pub connect_timeout: Duration,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            peer: PeerConfig::default(),
            limits: WebRtcLimits::default(),
            buffer: BufferSettings::default(),
            progressive: true,
            gather_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// WebRTC playback, the port the signaling and REST faces use.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WebRtcService: Send + Sync {
    /// Checks every rendition (it must exist, be a file, and be playable media) and registers the stream.
    async fn create_stream(&self, spec: StreamSpec) -> Result<StreamInfo>;
    fn streams(&self) -> Vec<StreamInfo>;
    /// The streams of the other instances sharing the database, as their instances described
    /// them (with `instance` and `state: "elsewhere"`); empty on a server of its own.
    fn streams_elsewhere(&self) -> Vec<serde_json::Value>;
    fn stream(&self, stream_id: &str) -> Result<StreamInfo>;
    /// Closes its connections and stops its playback.
    async fn delete_stream(&self, stream_id: &str) -> Result<()>;
    /// A new connection with the server's offer.
    async fn offer(&self, request: PlayRequest) -> Result<Offer>;
    /// The remote's answer to an offer.
    async fn answer(&self, pc_id: &str, sdp: &str) -> Result<()>;
    /// A new connection answering the remote's offer (WHEP).
    async fn accept(&self, request: PlayRequest, offer_sdp: &str) -> Result<Answer>;
    async fn add_candidate(&self, pc_id: &str, candidate: IceCandidate) -> Result<()>;
    /// Adds the media of `cid` to a connection; returns the new offer to answer.
    async fn add_track(&self, pc_id: &str, cid: Cid) -> Result<(String, Vec<TrackSummary>)>;
    async fn set_quality(&self, pc_id: &str, quality: Quality) -> Result<QualityChange>;
    fn connections(&self) -> Vec<ConnectionInfo>;
    async fn stats(&self, pc_id: &str) -> Result<ConnectionStats>;
    async fn close(&self, pc_id: &str) -> Result<()>;
    /// Closes every connection; returns how many.
    async fn close_all(&self) -> usize;
    /// The ICE servers clients are given by default.
    fn ice_servers(&self) -> Vec<IceServer>;
    /// Gauges and counters of all streams and connections.
    async fn totals(&self) -> WebRtcTotals;
}
