//! WebRTC playback as a service: streams (a CID or a ladder of renditions, with buffer settings),
//! peer connections playing them (the server offers, or answers a WHEP offer), quality control,
//! statistics, limits, lifecycle notifications and stream records.
//!
//! One playback per rendition per stream, shared by every viewer of the stream. A stream made for a
//! single request (a bare CID) lives as long as its connection. Every connection is closed and
//! accounted for when it fails, is closed, or never connects.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cid::Cid;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::peer::{IceCandidate, IceServer, Peer, PeerConfig, PeerEvent, PeerStats, Source};
use super::quality::{AdaptiveSwitch, Quality, rendition_for};
use crate::clock::now_ms;
use crate::content::{ContentService, NodeKind};
use crate::error::{Error, Result};
use crate::media::playback::{BufferSettings, Playback, PlaybackStats};
use crate::media::source::StoreSource;
use crate::media::{Demuxer, MediaError, TrackInfo};
use crate::metrics::{Direction, Outcome, StreamMetrics, StreamRecord, StreamType};
use crate::monitoring::{LiveStats, LiveStream};
use crate::notifications::{CloseReason, Event, Notifier, PlayTarget, StreamEndReason, WebrtcErrorSubject, emit};

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

/// Counters that outlive connections and playbacks.
#[derive(Default)]
struct Counters {
    frames_sent: std::sync::atomic::AtomicU64,
    bytes_sent: std::sync::atomic::AtomicU64,
    frames_dropped: std::sync::atomic::AtomicU64,
    underflows: std::sync::atomic::AtomicU64,
    overflows: std::sync::atomic::AtomicU64,
    quality_switches: std::sync::atomic::AtomicU64,
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

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

struct Rendition {
    quality: Quality,
    cid: Cid,
    size: u64,
}

/// The playbacks of a stream's renditions, started together.
struct Running {
    playbacks: Arc<[Arc<Playback>]>,
    /// Stops the watcher.
    stop: watch::Sender<bool>,
}

struct StreamEntry {
    id: String,
    spec: StreamSpec,
    renditions: Vec<Rendition>,
    tracks: Vec<TrackInfo>,
    /// Made for one connection, gone with it.
    ephemeral: bool,
    created_at_ms: i64,
    /// Demuxers opened when the stream was checked, used by its first playback.
    probed: Mutex<Option<Vec<Box<dyn Demuxer>>>>,
    running: Mutex<Option<Running>>,
    viewers: AtomicUsize,
    bitrates: Mutex<Vec<f64>>,
    benchmark: Mutex<VecDeque<BenchmarkSample>>,
}

impl StreamEntry {
    fn adaptable(&self) -> bool {
        self.renditions.len() > 1
    }

    fn qualities(&self) -> Vec<Quality> {
        self.renditions.iter().map(|r| r.quality).collect()
    }

    fn playbacks(&self) -> Option<Arc<[Arc<Playback>]>> {
        self.running
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|running| running.playbacks.clone())
    }

    fn info(&self) -> StreamInfo {
        let playbacks = self.playbacks();
        let playing = playbacks
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p.is_playing() && !p.is_finished()));
        let bitrates = self.bitrates.lock().expect("not poisoned").clone();
        StreamInfo {
            stream_id: self.id.clone(),
            cid: self.spec.cid.to_string(),
            quality: self.spec.quality,
            renditions: self
                .renditions
                .iter()
                .zip(bitrates)
                .map(|(r, bitrate_bps)| RenditionInfo {
                    quality: r.quality,
                    cid: r.cid.to_string(),
                    size: r.size,
                    bitrate_bps,
                })
                .collect(),
            adaptable: self.adaptable(),
            tracks: self.tracks.iter().map(TrackSummary::from).collect(),
            viewers: self.viewers.load(Ordering::Relaxed),
            state: if playing { "playing" } else { "idle" },
            buffer_size: self.spec.buffer.buffer_size,
            prefetch_threshold: self.spec.buffer.prefetch_threshold,
            use_progressive_loading: self.spec.progressive,
            created_at_ms: self.created_at_ms,
            playback: playbacks.map(|p| p[0].stats()),
            benchmark: self
                .spec
                .benchmark
                .then(|| self.benchmark.lock().expect("not poisoned").iter().cloned().collect()),
        }
    }
}

struct Connection {
    pc_id: String,
    stream: Arc<StreamEntry>,
    /// Streams added to this connection with `add_track`.
    added: Mutex<Vec<Arc<StreamEntry>>>,
    peer: Arc<Peer>,
    quality: Mutex<Quality>,
    selected: watch::Sender<usize>,
    created_at_ms: i64,
    created: Instant,
    /// Holds the connection open in the live counters.
    counter: Arc<LiveCounter>,
}

impl Connection {
    fn info(&self) -> ConnectionInfo {
        let rendition = self.stream.renditions[*self.selected.borrow()].quality;
        let quality = *self.quality.lock().expect("not poisoned");
        let (frames_sent, bytes_sent) = self.peer.sent();
        ConnectionInfo {
            pc_id: self.pc_id.clone(),
            stream_id: self.stream.id.clone(),
            cid: self.stream.spec.cid.to_string(),
            state: self.peer.state().borrow().to_string(),
            quality,
            rendition,
            adaptable: self.stream.adaptable(),
            created_at_ms: self.created_at_ms,
            frames_sent,
            bytes_sent,
        }
    }
}

/// The service: streams, connections, their tasks. Peers and playbacks run on `runtime`.
pub struct WebRtcHub {
    content: Arc<dyn ContentService>,
    notifier: Arc<dyn Notifier>,
    metrics: Arc<dyn StreamMetrics>,
    live: Arc<LiveStats>,
    runtime: Handle,
    config: WebRtcConfig,
    streams: Mutex<HashMap<String, Arc<StreamEntry>>>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Connections being set up, counted against the limit before they are in `connections`.
    connecting: AtomicUsize,
    counters: Counters,
}

/// A place counted in a gauge while it lives.
struct Reservation<'a>(&'a AtomicUsize);

impl<'a> Reservation<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WebRtcHub {
    pub fn new(
        content: Arc<dyn ContentService>,
        notifier: Arc<dyn Notifier>,
        metrics: Arc<dyn StreamMetrics>,
        live: Arc<LiveStats>,
        runtime: Handle,
        config: WebRtcConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            content,
            notifier,
            metrics,
            live,
            runtime,
            config,
            streams: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            connecting: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    fn notify(&self, event: Event) {
        emit(self.notifier.as_ref(), event);
    }

    /// A `webrtc_error` about a stream.
    fn stream_error(&self, stream: &StreamEntry, error: String) {
        self.notify(Event::WebrtcError {
            subject: WebrtcErrorSubject::Stream {
                stream_id: stream.id.clone(),
                cid: stream.spec.cid.to_string(),
            },
            error,
        });
    }

    /// Opens `cid` as media (a file in the store) on a blocking thread.
    async fn open_media(&self, cid: Cid, size: u64, progressive: bool) -> Result<Box<dyn Demuxer>> {
        let content = self.content.clone();
        let runtime = self.runtime.clone();
        self.runtime
            .spawn_blocking(move || -> Result<Box<dyn Demuxer>> {
                if progressive {
                    let source = StoreSource::new(content, cid, size, runtime);
                    Ok(crate::media::open(Box::new(source), size)?)
                } else {
                    let bytes = StoreSource::load_all(&content, &cid, &runtime).map_err(MediaError::from)?;
                    Ok(crate::media::open(Box::new(std::io::Cursor::new(bytes)), size)?)
                }
            })
            .await
            .map_err(|e| Error::task("media", e))?
    }

    /// Checks the renditions and builds the stream (not yet registered).
    async fn build_stream(&self, spec: StreamSpec, ephemeral: bool) -> Result<Arc<StreamEntry>> {
        let mut ladder: Vec<(Quality, Cid)> = spec.renditions.clone();
        if !ladder.iter().any(|(_, cid)| *cid == spec.cid) {
            let quality = if spec.quality == Quality::Auto {
                Quality::Medium
            } else {
                spec.quality
            };
            ladder.push((quality, spec.cid));
        }
        ladder.sort_by_key(|(quality, _)| *quality);
        if let Some(pair) = ladder.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Error::Input(format!(
                "renditions: two renditions for quality {}",
                pair[0].0.as_str()
            )));
        }
        let mut renditions = Vec::new();
        let mut probed = Vec::new();
        let mut tracks: Option<Vec<TrackInfo>> = None;
        for (quality, cid) in ladder {
            let stat = self.content.stat(&cid).await?;
            if stat.kind != NodeKind::File {
                return Err(Error::WrongKind {
                    cid,
                    expected: "file",
                    actual: "directory",
                });
            }
            let demuxer = self.open_media(cid, stat.size, spec.progressive).await?;
            let codecs: Vec<_> = demuxer.tracks().iter().map(|t| t.codec).collect();
            match &tracks {
                None => tracks = Some(demuxer.tracks().to_vec()),
                Some(first) if first.iter().map(|t| t.codec).collect::<Vec<_>>() != codecs => {
                    return Err(Error::Input(format!(
                        "renditions: {cid} has tracks {:?}, unlike the others {:?}",
                        codecs.iter().map(|c| c.name()).collect::<Vec<_>>(),
                        first.iter().map(|t| t.codec.name()).collect::<Vec<_>>()
                    )));
                }
                Some(_) => {}
            }
            probed.push(demuxer);
            renditions.push(Rendition {
                quality,
                cid,
                size: stat.size,
            });
        }
        let bitrates = renditions.iter().map(|r| r.quality.nominal_bitrate_bps()).collect();
        Ok(Arc::new(StreamEntry {
            id: new_id("st"),
            renditions,
            tracks: tracks.unwrap_or_default(),
            ephemeral,
            created_at_ms: now_ms(),
            probed: Mutex::new(Some(probed)),
            running: Mutex::new(None),
            viewers: AtomicUsize::new(0),
            bitrates: Mutex::new(bitrates),
            benchmark: Mutex::new(VecDeque::new()),
            spec,
        }))
    }

    /// The stream's playbacks, prepared (they start with their first viewer); a stream that
    /// ended starts over.
    async fn playbacks(self: &Arc<Self>, stream: &Arc<StreamEntry>) -> Result<Arc<[Arc<Playback>]>> {
        if let Some(playbacks) = stream.playbacks()
            && !playbacks.iter().all(|p| p.is_finished())
        {
            return Ok(playbacks);
        }
        let probed = stream.probed.lock().expect("not poisoned").take();
        let demuxers = match probed {
            Some(demuxers) => demuxers,
            None => {
                let mut demuxers = Vec::new();
                for rendition in &stream.renditions {
                    demuxers.push(
                        self.open_media(rendition.cid, rendition.size, stream.spec.progressive)
                            .await?,
                    );
                }
                demuxers
            }
        };
        let playbacks: Arc<[Arc<Playback>]> = {
            let _runtime = self.runtime.enter();
            demuxers
                .into_iter()
                .map(|demuxer| Playback::prepare(demuxer, stream.spec.buffer))
                .collect()
        };
        let (stop, stopped) = watch::channel(false);
        let previous = stream.running.lock().expect("not poisoned").replace(Running {
            playbacks: playbacks.clone(),
            stop,
        });
        if let Some(previous) = previous {
            let _ = previous.stop.send(true);
        }
        self.runtime
            .spawn(self.clone().watch_stream(stream.clone(), playbacks.clone(), stopped));
        Ok(playbacks)
    }

    /// Follows a stream's playbacks each second: announces start and end, passes underflows to
    /// the live counters, measures rendition bitrates, keeps benchmark samples.
    async fn watch_stream(
        self: Arc<Self>,
        stream: Arc<StreamEntry>,
        playbacks: Arc<[Arc<Playback>]>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut started = false;
        let mut underflows = 0;
        let (mut dropped, mut overflows) = (0, 0);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Renditions start together: the first one's start is the stream's.
        let mut playing = playbacks[0].started();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
                _ = playing.wait_for(|playing| *playing), if !started => {}
            }
            if *stopped.borrow() {
                break;
            }
            if !started && playbacks.iter().any(|p| p.is_playing()) {
                started = true;
                self.notify(Event::WebrtcStreamStarted {
                    stream_id: stream.id.clone(),
                    cid: stream.spec.cid.to_string(),
                    renditions: stream.renditions.len(),
                    viewers: stream.viewers.load(Ordering::Relaxed),
                });
            }
            let stats: Vec<PlaybackStats> = playbacks.iter().map(|p| p.stats()).collect();
            let total_underflows: u64 = stats.iter().map(|s| s.underflows).sum();
            for _ in underflows..total_underflows {
                self.live.underflow();
            }
            self.counters
                .underflows
                .fetch_add(total_underflows.saturating_sub(underflows), Ordering::Relaxed);
            underflows = total_underflows;
            let total_dropped: u64 = stats.iter().map(|s| s.frames_dropped).sum();
            let total_overflows: u64 = stats.iter().map(|s| s.overflows).sum();
            self.counters
                .frames_dropped
                .fetch_add(total_dropped.saturating_sub(dropped), Ordering::Relaxed);
            self.counters
                .overflows
                .fetch_add(total_overflows.saturating_sub(overflows), Ordering::Relaxed);
            (dropped, overflows) = (total_dropped, total_overflows);
            {
                let mut bitrates = stream.bitrates.lock().expect("not poisoned");
                for (bitrate, stats) in bitrates.iter_mut().zip(&stats) {
                    if stats.fps > 0.0 && stats.bitrate_bps > 0.0 {
                        *bitrate += (stats.bitrate_bps - *bitrate) * 0.2;
                    }
                }
            }
            if stream.spec.benchmark && started {
                let first = &stats[0];
                let mut samples = stream.benchmark.lock().expect("not poisoned");
                samples.push_back(BenchmarkSample {
                    at_ms: now_ms(),
                    viewers: stream.viewers.load(Ordering::Relaxed),
                    fps: first.fps,
                    bitrate_bps: first.bitrate_bps,
                    fill_level: first.fill_level,
                    underflows: first.underflows,
                    frames_dropped: first.frames_dropped,
                });
                while samples.len() > 600 {
                    samples.pop_front();
                }
            }
            if started && playbacks.iter().all(|p| p.is_finished()) {
                let error = stats.iter().find_map(|s| s.error.clone());
                if let Some(error) = &error {
                    self.stream_error(&stream, error.clone());
                }
                self.notify(Event::WebrtcStreamEnded {
                    stream_id: stream.id.clone(),
                    cid: stream.spec.cid.to_string(),
                    reason: StreamEndReason::Finished,
                    frames_sent: stats[0].frames_sent,
                    underflows: total_underflows,
                    error,
                });
                return;
            }
        }
        // Stopped before its end: deleted, or its last viewer left.
        if started {
            let frames_sent = playbacks.first().map_or(0, |p| p.stats().frames_sent);
            self.notify(Event::WebrtcStreamEnded {
                stream_id: stream.id.clone(),
                cid: stream.spec.cid.to_string(),
                reason: StreamEndReason::Stopped,
                frames_sent,
                underflows,
                error: None,
            });
        }
    }

    /// Sends `stream` on the connection as well, and the offer that renegotiates it.
    async fn attach_and_offer(self: &Arc<Self>, connection: &Connection, stream: &Arc<StreamEntry>) -> Result<String> {
        let playbacks = self.playbacks(stream).await?;
        let (_, selection) = watch::channel(0);
        let peer = connection.peer.clone();
        let source = Source {
            renditions: playbacks,
            selected: selection,
        };
        self.runtime
            .spawn(async move {
                peer.attach(source).await?;
                peer.offer().await
            })
            .await
            .map_err(|e| Error::task("peer", e))?
    }

    fn find_stream(&self, stream_id: &str) -> Result<Arc<StreamEntry>> {
        self.streams
            .lock()
            .expect("not poisoned")
            .get(stream_id)
            .cloned()
            .ok_or_else(|| Error::UnknownId {
                kind: "stream",
                id: stream_id.to_owned(),
            })
    }

    fn find_connection(&self, pc_id: &str) -> Result<Arc<Connection>> {
        self.connections
            .lock()
            .expect("not poisoned")
            .get(pc_id)
            .cloned()
            .ok_or_else(|| Error::UnknownId {
                kind: "connection",
                id: pc_id.to_owned(),
            })
    }

    /// The stream a request plays, made for it when it names a CID.
    async fn target(&self, request: &PlayRequest) -> Result<Arc<StreamEntry>> {
        match &request.target {
            Target::Stream(id) => self.find_stream(id),
            Target::Cid(cid) => {
                let spec = StreamSpec {
                    cid: *cid,
                    renditions: Vec::new(),
                    quality: request.quality.unwrap_or(Quality::Auto),
                    ice_servers: Vec::new(),
                    buffer: request.buffer.unwrap_or(self.config.buffer),
                    progressive: request.progressive.unwrap_or(self.config.progressive),
                    benchmark: false,
                };
                self.build_stream(spec, true).await
            }
        }
    }

    /// A connection playing `request`, its peer built and media attached (no SDP exchanged yet).
    async fn connect(self: &Arc<Self>, request: &PlayRequest) -> Result<(Arc<Connection>, mpsc::Receiver<PeerEvent>)> {
        let stream = match self.target(request).await {
            Ok(stream) => stream,
            Err(error) => {
                let target = match &request.target {
                    Target::Stream(id) => PlayTarget::Stream { stream_id: id.clone() },
                    Target::Cid(cid) => PlayTarget::Cid { cid: cid.to_string() },
                };
                self.notify(Event::WebrtcError {
                    subject: WebrtcErrorSubject::Target { target },
                    error: error.to_string(),
                });
                return Err(error);
            }
        };
        // Reserve the places first, so concurrent requests cannot overshoot the limits.
        let limits = self.config.limits;
        let _place = {
            let connections = self.connections.lock().expect("not poisoned");
            let total = connections.len() + self.connecting.load(Ordering::Relaxed);
            if total >= limits.max_connections {
                return Err(Error::AtCapacity(format!(
                    "{total} WebRTC connections open or opening, the server's limit is {}",
                    limits.max_connections
                )));
            }
            Reservation::new(&self.connecting)
        };
        let viewers = stream.viewers.fetch_add(1, Ordering::Relaxed);
        if viewers >= limits.max_viewers_per_stream {
            stream.viewers.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::LimitReached(format!(
                "stream {} has {viewers} viewers, the limit per stream is {}",
                stream.id, limits.max_viewers_per_stream
            )));
        }
        match self.build_connection(&stream, request).await {
            Ok(built) => Ok(built),
            Err(error) => {
                stream.viewers.fetch_sub(1, Ordering::Relaxed);
                if stream.ephemeral {
                    self.retire_if_unwatched(&stream);
                }
                self.stream_error(&stream, error.to_string());
                Err(error)
            }
        }
    }

    async fn build_connection(
        self: &Arc<Self>,
        stream: &Arc<StreamEntry>,
        request: &PlayRequest,
    ) -> Result<(Arc<Connection>, mpsc::Receiver<PeerEvent>)> {
        if stream.ephemeral {
            self.streams
                .lock()
                .expect("not poisoned")
                .insert(stream.id.clone(), stream.clone());
        }
        let playbacks = self.playbacks(stream).await?;
        let quality = request.quality.unwrap_or(stream.spec.quality);
        let start = match quality {
            Quality::Auto => 0,
            fixed => rendition_for(fixed, &stream.qualities()),
        };
        let (selected, selection) = watch::channel(start);
        let mut peer_config = self.config.peer.clone();
        if !stream.spec.ice_servers.is_empty() {
            peer_config.ice_servers = stream.spec.ice_servers.clone();
        }
        let pc_id = new_id("pc");
        let counter = Arc::new(LiveCounter {
            live: Mutex::new(Some(self.live.open_stream(
                stream.spec.cid.to_string(),
                StreamType::Webrtc,
                Direction::Outbound,
                now_ms(),
            ))),
        });
        let on_sent = {
            let counter = counter.clone();
            Arc::new(move |bytes: u64| counter.count(bytes)) as Arc<dyn Fn(u64) + Send + Sync>
        };
        let config = peer_config.clone();
        let (peer, events) = self
            .runtime
            .spawn(async move { Peer::new(&config, on_sent).await })
            .await
            .map_err(|e| Error::task("peer", e))??;
        {
            let peer = peer.clone();
            let source = Source {
                renditions: playbacks,
                selected: selection,
            };
            self.runtime
                .spawn(async move { peer.attach(source).await })
                .await
                .map_err(|e| Error::task("peer", e))??;
        }
        let connection = Arc::new(Connection {
            pc_id: pc_id.clone(),
            stream: stream.clone(),
            added: Mutex::new(Vec::new()),
            peer: peer.clone(),
            quality: Mutex::new(quality),
            selected,
            created_at_ms: now_ms(),
            created: Instant::now(),
            counter,
        });
        self.connections
            .lock()
            .expect("not poisoned")
            .insert(pc_id.clone(), connection.clone());
        self.notify(Event::WebrtcConnectionCreated {
            pc_id: pc_id.clone(),
            stream_id: stream.id.clone(),
            cid: stream.spec.cid.to_string(),
            quality: quality.as_str(),
        });
        self.runtime.spawn(self.clone().supervise(connection.clone()));
        Ok((connection, events))
    }

    /// Follows a connection: announces it established, adapts its quality in `auto`, and closes
    /// it when it fails, closes, or never connects.
    async fn supervise(self: Arc<Self>, connection: Arc<Connection>) {
        let mut state = connection.peer.state();
        let mut established = false;
        let mut abr = AdaptiveSwitch::new(*connection.selected.borrow());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Loss from RTCP receiver reports, read every few ticks (a stats report is not cheap).
        let (mut rtcp_loss, mut ticks) = (0.0, 0u64);
        let reason = loop {
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        break CloseReason::Closed;
                    }
                }
                _ = tick.tick() => {}
            }
            if !self
                .connections
                .lock()
                .expect("not poisoned")
                .contains_key(&connection.pc_id)
            {
                return;
            }
            let current = *state.borrow_and_update();
            match current {
                RTCPeerConnectionState::Connected if !established => {
                    established = true;
                    self.notify(Event::WebrtcConnectionEstablished {
                        pc_id: connection.pc_id.clone(),
                        stream_id: connection.stream.id.clone(),
                        setup_ms: connection.created.elapsed().as_millis() as u64,
                    });
                }
                RTCPeerConnectionState::Failed => break CloseReason::Failed,
                RTCPeerConnectionState::Closed => break CloseReason::Closed,
                _ => {}
            }
            if !established && connection.created.elapsed() > self.config.connect_timeout {
                break CloseReason::NeverConnected;
            }
            let quality = *connection.quality.lock().expect("not poisoned");
            if established && quality == Quality::Auto && connection.stream.adaptable() {
                let bitrates = connection.stream.bitrates.lock().expect("not poisoned").clone();
                let estimate = connection.peer.bandwidth_estimate();
                if ticks % 4 == 0 {
                    rtcp_loss = connection.peer.stats().await.rtcp_fraction_lost.unwrap_or(0.0);
                }
                ticks += 1;
                // TWCC feedback and receiver reports each see loss; the worse one counts.
                let loss = connection.peer.packet_loss().max(rtcp_loss);
                // The viewer may have chosen a fixed preset since the last decision.
                abr.follow(Instant::now(), *connection.selected.borrow());
                if let Some(to) = abr.decide(Instant::now(), estimate, loss, &bitrates) {
                    self.switch(&connection, to, "auto", estimate, loss);
                }
            }
        };
        if reason.is_failure() {
            self.notify(Event::WebrtcError {
                subject: WebrtcErrorSubject::Connection {
                    pc_id: connection.pc_id.clone(),
                    stream_id: connection.stream.id.clone(),
                },
                error: format!("connection {}", reason.as_str()),
            });
        }
        let _ = self.finish(&connection.pc_id, reason).await;
    }

    fn switch(&self, connection: &Connection, to: usize, reason: &'static str, estimate_bps: f64, loss: f64) {
        let from = *connection.selected.borrow();
        if from == to {
            return;
        }
        connection.selected.send_replace(to);
        self.counters.quality_switches.fetch_add(1, Ordering::Relaxed);
        let renditions = &connection.stream.renditions;
        self.notify(Event::WebrtcQualityChanged {
            pc_id: connection.pc_id.clone(),
            stream_id: connection.stream.id.clone(),
            from: renditions[from].quality.as_str(),
            to: renditions[to].quality.as_str(),
            reason,
            bandwidth_estimate_bps: estimate_bps,
            packet_loss: loss,
        });
    }

    /// Removes and closes a connection, records it, and retires its streams if made for it.
    async fn finish(&self, pc_id: &str, reason: CloseReason) -> Result<()> {
        let connection = self
            .connections
            .lock()
            .expect("not poisoned")
            .remove(pc_id)
            .ok_or_else(|| Error::UnknownId {
                kind: "connection",
                id: pc_id.to_owned(),
            })?;
        let peer = connection.peer.clone();
        let _ = self.runtime.spawn(async move { peer.close().await }).await;
        let stats = connection.peer.stats().await;
        connection.counter.close();
        self.counters
            .frames_sent
            .fetch_add(stats.frames_sent, Ordering::Relaxed);
        self.counters.bytes_sent.fetch_add(stats.bytes_sent, Ordering::Relaxed);
        self.metrics.record(StreamRecord {
            stream_type: StreamType::Webrtc,
            direction: Direction::Outbound,
            path: connection.stream.spec.cid.to_string(),
            bytes: stats.bytes_sent,
            chunks: stats.frames_sent,
            chunk_size: 0,
            duration: connection.created.elapsed(),
            correlation_id: connection.pc_id.clone(),
            outcome: if reason.aborted() {
                Outcome::Aborted
            } else {
                Outcome::Ok
            },
            started_at_ms: connection.created_at_ms,
        });
        self.notify(Event::WebrtcConnectionClosed {
            pc_id: connection.pc_id.clone(),
            stream_id: connection.stream.id.clone(),
            reason,
            frames_sent: stats.frames_sent,
            bytes_sent: stats.bytes_sent,
            duration_ms: connection.created.elapsed().as_millis() as u64,
        });
        let mut streams = vec![connection.stream.clone()];
        streams.extend(connection.added.lock().expect("not poisoned").drain(..));
        for stream in &streams {
            stream.viewers.fetch_sub(1, Ordering::Relaxed);
            if stream.ephemeral {
                self.retire_if_unwatched(stream);
            }
        }
        Ok(())
    }

    /// Stops and forgets a stream made for a connection once nobody watches it.
    fn retire_if_unwatched(&self, stream: &Arc<StreamEntry>) {
        if stream.viewers.load(Ordering::Relaxed) > 0 {
            return;
        }
        self.streams.lock().expect("not poisoned").remove(&stream.id);
        stop_stream(stream);
    }
}

/// Streams created through the API (not made for one connection) among `streams`.
fn created_among(streams: &HashMap<String, Arc<StreamEntry>>) -> usize {
    streams.values().filter(|s| !s.ephemeral).count()
}

fn stop_stream(stream: &StreamEntry) {
    if let Some(running) = stream.running.lock().expect("not poisoned").take() {
        for playback in running.playbacks.iter() {
            playback.stop();
        }
        let _ = running.stop.send(true);
    }
    stream.probed.lock().expect("not poisoned").take();
}

/// Counts a connection's bytes into its live stream while it is open.
struct LiveCounter {
    live: Mutex<Option<LiveStream>>,
}

impl LiveCounter {
    fn count(&self, bytes: u64) {
        if let Some(live) = &*self.live.lock().expect("not poisoned") {
            live.count(bytes);
        }
    }

    /// Ends the connection in the live counters.
    fn close(&self) {
        self.live.lock().expect("not poisoned").take();
    }
}

#[async_trait]
impl WebRtcService for Arc<WebRtcHub> {
    async fn create_stream(&self, spec: StreamSpec) -> Result<StreamInfo> {
        let max = self.config.limits.max_streams;
        let created = self.created_streams();
        if created >= max {
            return Err(Error::LimitReached(format!(
                "{created} streams exist, the limit is {max}"
            )));
        }
        let stream = self.build_stream(spec, false).await?;
        let info = stream.info();
        let mut streams = self.streams.lock().expect("not poisoned");
        // Checked again as it is added: concurrent requests all passed the first check.
        let created = created_among(&streams);
        if created >= max {
            drop(streams);
            stop_stream(&stream);
            return Err(Error::LimitReached(format!(
                "{created} streams exist, the limit is {max}"
            )));
        }
        streams.insert(stream.id.clone(), stream);
        Ok(info)
    }

    fn streams(&self) -> Vec<StreamInfo> {
        let mut streams: Vec<StreamInfo> = self
            .streams
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|s| !s.ephemeral)
            .map(|s| s.info())
            .collect();
        streams.sort_by(|a, b| {
            a.created_at_ms
                .cmp(&b.created_at_ms)
                .then(a.stream_id.cmp(&b.stream_id))
        });
        streams
    }

    fn stream(&self, stream_id: &str) -> Result<StreamInfo> {
        Ok(self.find_stream(stream_id)?.info())
    }

    async fn delete_stream(&self, stream_id: &str) -> Result<()> {
        let stream = self.find_stream(stream_id)?;
        let watching: Vec<String> = self
            .connections
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|c| c.stream.id == stream.id)
            .map(|c| c.pc_id.clone())
            .collect();
        for pc_id in watching {
            let _ = self.finish(&pc_id, CloseReason::Closed).await;
        }
        self.streams.lock().expect("not poisoned").remove(stream_id);
        stop_stream(&stream);
        Ok(())
    }

    async fn offer(&self, request: PlayRequest) -> Result<Offer> {
        let (connection, events) = self.connect(&request).await?;
        let peer = connection.peer.clone();
        let sdp = match self.runtime.spawn(async move { peer.offer().await }).await {
            Ok(Ok(sdp)) => sdp,
            Ok(Err(error)) => {
                let _ = self.finish(&connection.pc_id, CloseReason::OfferFailed).await;
                return Err(error);
            }
            Err(error) => {
                let _ = self.finish(&connection.pc_id, CloseReason::OfferFailed).await;
                return Err(Error::task("peer", error));
            }
        };
        Ok(Offer {
            pc_id: connection.pc_id.clone(),
            stream_id: connection.stream.id.clone(),
            sdp,
            ice_servers: self.ice_servers_of(&connection.stream),
            tracks: connection.stream.tracks.iter().map(TrackSummary::from).collect(),
            events,
        })
    }

    async fn answer(&self, pc_id: &str, sdp: &str) -> Result<()> {
        let connection = self.find_connection(pc_id)?;
        let sdp = sdp.to_owned();
        let peer = connection.peer.clone();
        self.runtime
            .spawn(async move { peer.answer(&sdp).await })
            .await
            .map_err(|e| Error::task("peer", e))?
    }

    async fn accept(&self, request: PlayRequest, offer_sdp: &str) -> Result<Answer> {
        let (connection, events) = self.connect(&request).await?;
        // Candidates go in the answer or by PATCH; nothing relays these events.
        drop(events);
        let peer = connection.peer.clone();
        let offer_sdp = offer_sdp.to_owned();
        let gather = self.config.gather_timeout;
        let answered = self
            .runtime
            .spawn(async move { peer.accept(&offer_sdp, gather).await })
            .await
            .map_err(|e| Error::task("peer", e))
            .and_then(|answered| answered);
        match answered {
            Ok(sdp) => Ok(Answer {
                pc_id: connection.pc_id.clone(),
                stream_id: connection.stream.id.clone(),
                sdp,
                ice_servers: self.ice_servers_of(&connection.stream),
            }),
            Err(error) => {
                let _ = self.finish(&connection.pc_id, CloseReason::OfferRefused).await;
                Err(error)
            }
        }
    }

    async fn add_candidate(&self, pc_id: &str, candidate: IceCandidate) -> Result<()> {
        let connection = self.find_connection(pc_id)?;
        let peer = connection.peer.clone();
        self.runtime
            .spawn(async move { peer.add_candidate(candidate).await })
            .await
            .map_err(|e| Error::task("peer", e))?
    }

    async fn add_track(&self, pc_id: &str, cid: Cid) -> Result<(String, Vec<TrackSummary>)> {
        let connection = self.find_connection(pc_id)?;
        let spec = StreamSpec {
            cid,
            renditions: Vec::new(),
            quality: Quality::Auto,
            ice_servers: Vec::new(),
            buffer: connection.stream.spec.buffer,
            progressive: connection.stream.spec.progressive,
            benchmark: false,
        };
        let stream = self.build_stream(spec, true).await?;
        stream.viewers.fetch_add(1, Ordering::Relaxed);
        self.streams
            .lock()
            .expect("not poisoned")
            .insert(stream.id.clone(), stream.clone());
        connection.added.lock().expect("not poisoned").push(stream.clone());
        match self.attach_and_offer(&connection, &stream).await {
            Ok(sdp) => Ok((sdp, stream.tracks.iter().map(TrackSummary::from).collect())),
            Err(error) => {
                // Nothing of the failed track stays: not on the connection, not as a stream.
                connection
                    .added
                    .lock()
                    .expect("not poisoned")
                    .retain(|added| !Arc::ptr_eq(added, &stream));
                stream.viewers.fetch_sub(1, Ordering::Relaxed);
                self.retire_if_unwatched(&stream);
                Err(error)
            }
        }
    }

    async fn set_quality(&self, pc_id: &str, quality: Quality) -> Result<QualityChange> {
        let connection = self.find_connection(pc_id)?;
        *connection.quality.lock().expect("not poisoned") = quality;
        if quality != Quality::Auto {
            let to = rendition_for(quality, &connection.stream.qualities());
            self.switch(
                &connection,
                to,
                "requested",
                connection.peer.bandwidth_estimate(),
                connection.peer.packet_loss(),
            );
        }
        let rendition = connection.stream.renditions[*connection.selected.borrow()].quality;
        Ok(QualityChange {
            pc_id: pc_id.to_owned(),
            quality,
            rendition,
            adaptable: connection.stream.adaptable(),
        })
    }

    fn connections(&self) -> Vec<ConnectionInfo> {
        let connections: Vec<Arc<Connection>> = self
            .connections
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let mut infos: Vec<ConnectionInfo> = connections.iter().map(|c| c.info()).collect();
        infos.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.pc_id.cmp(&b.pc_id)));
        infos
    }

    async fn stats(&self, pc_id: &str) -> Result<ConnectionStats> {
        let connection = self.find_connection(pc_id)?;
        let transport = connection.peer.stats().await;
        let mut info = connection.info();
        info.frames_sent = transport.frames_sent;
        info.bytes_sent = transport.bytes_sent;
        let buffer = connection
            .stream
            .playbacks()
            .map(|p| p[*connection.selected.borrow()].stats())
            .unwrap_or_default();
        Ok(ConnectionStats {
            connection: info,
            buffer,
            transport,
        })
    }

    async fn close(&self, pc_id: &str) -> Result<()> {
        self.finish(pc_id, CloseReason::Closed).await
    }

    async fn close_all(&self) -> usize {
        let ids: Vec<String> = self.connections.lock().expect("not poisoned").keys().cloned().collect();
        let mut closed = 0;
        for pc_id in ids {
            if self.finish(&pc_id, CloseReason::Closed).await.is_ok() {
                closed += 1;
            }
        }
        closed
    }

    fn ice_servers(&self) -> Vec<IceServer> {
        self.config.peer.ice_servers.clone()
    }

    async fn totals(&self) -> WebRtcTotals {
        let connections: Vec<Arc<Connection>> = self
            .connections
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let streams: Vec<Arc<StreamEntry>> = self.streams.lock().expect("not poisoned").values().cloned().collect();
        let c = &self.counters;
        let mut totals = WebRtcTotals {
            connections: Quality::ALL.iter().map(|q| (*q, 0)).collect(),
            frames_sent_total: c.frames_sent.load(Ordering::Relaxed),
            bytes_sent_total: c.bytes_sent.load(Ordering::Relaxed),
            frames_dropped_total: c.frames_dropped.load(Ordering::Relaxed),
            underflows_total: c.underflows.load(Ordering::Relaxed),
            overflows_total: c.overflows.load(Ordering::Relaxed),
            quality_switches_total: c.quality_switches.load(Ordering::Relaxed),
            ..Default::default()
        };
        let mut fill = Vec::new();
        for stream in &streams {
            if let Some(playbacks) = stream.playbacks()
                && playbacks.iter().any(|p| p.is_playing() && !p.is_finished())
            {
                totals.streams_playing += 1;
                fill.extend(playbacks.iter().map(|p| p.stats().fill_level));
            }
        }
        totals.fill_level = fill.iter().sum::<f64>() / fill.len().max(1) as f64;
        let (mut loss, mut jitter) = (0.0, 0.0);
        for connection in &connections {
            let rendition = connection.stream.renditions[*connection.selected.borrow()].quality;
            if let Some((_, count)) = totals.connections.iter_mut().find(|(q, _)| *q == rendition) {
                *count += 1;
            }
            let stats = connection.peer.stats().await;
            // Counters keep counting while connections are open.
            totals.frames_sent_total += stats.frames_sent;
            totals.bytes_sent_total += stats.bytes_sent;
            totals.bandwidth_estimate_bps += stats.bandwidth_estimate_bps;
            loss += stats.packet_loss;
            jitter += stats.remote_jitter_ms.unwrap_or(0.0) / 1000.0;
        }
        let open = connections.len().max(1) as f64;
        totals.packet_loss = loss / open;
        totals.jitter_seconds = jitter / open;
        totals
    }
}

impl WebRtcHub {
    fn created_streams(&self) -> usize {
        created_among(&self.streams.lock().expect("not poisoned"))
    }

    fn ice_servers_of(&self, stream: &StreamEntry) -> Vec<IceServer> {
        if stream.spec.ice_servers.is_empty() {
            self.config.peer.ice_servers.clone()
        } else {
            stream.spec.ice_servers.clone()
        }
    }
}
