//! [`WebRtcHub`], the WebRTC service: it owns the streams ([`streams`]: the registry, building a
//! stream and its shared playbacks), the connections ([`connections`]: the registry, limits, setting
//! a peer up and ending it), follows each connection ([`supervisor`]: established, adaptive
//! quality, failure) and each stream ([`watch`]: start, end, counters), and answers the
//! [`WebRtcService`] port.
//!
//! One playback per rendition per stream, shared by every viewer of the stream. A stream made for a
//! single request (a bare CID) lives as long as its connection. Every connection is closed and
//! accounted for when it fails, is closed, or never connects.

mod connections;
mod shared;
mod streams;
mod supervisor;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use cid::Cid;
use tokio::runtime::Handle;

use super::ice::{IceCandidate, IceServer};
use super::quality::{Quality, rendition_for};
use super::service::{
    Answer, ConnectionInfo, ConnectionStats, Offer, PlayRequest, QualityChange, StreamInfo, StreamSpec, TrackSummary,
    WebRtcConfig, WebRtcService, WebRtcTotals,
};
use crate::content::ContentService;
use crate::error::{Error, Result};
use crate::monitoring::LiveStats;
use crate::notifications::{CloseReason, Event, Notifier, WebrtcErrorSubject, emit};
use crate::stream_records::StreamMetrics;
use connections::Connection;
use streams::{StreamEntry, created_among, stop_stream};

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
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
    /// The directory of the instances sharing a database, once [`WebRtcHub::share_streams`] ran.
    shared: OnceLock<shared::Shared>,
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
            shared: OnceLock::new(),
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
        let stream = self.build_stream(spec, false, None).await?;
        let info = self.described(&stream);
        // Listed for the other instances before anyone may play it; not created if it cannot be.
        if let Err(error) = self.announce(&stream, &info).await {
            stop_stream(&stream);
            return Err(error);
        }
        // Checked again as it is added: concurrent requests all passed the first check.
        let refused = {
            let mut streams = self.streams.lock().expect("not poisoned");
            let created = created_among(&streams);
            if created >= max {
                Some(created)
            } else {
                streams.insert(stream.id.clone(), stream.clone());
                None
            }
        };
        if let Some(created) = refused {
            stop_stream(&stream);
            self.withdraw(&stream.id).await;
            return Err(Error::LimitReached(format!(
                "{created} streams exist, the limit is {max}"
            )));
        }
        Ok(info)
    }

    fn streams(&self) -> Vec<StreamInfo> {
        let mut streams: Vec<StreamInfo> = self
            .streams
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|s| !s.ephemeral)
            .map(|s| self.described(s))
            .collect();
        streams.sort_by(|a, b| {
            a.created_at_ms
                .cmp(&b.created_at_ms)
                .then(a.stream_id.cmp(&b.stream_id))
        });
        streams
    }

    fn streams_elsewhere(&self) -> Vec<serde_json::Value> {
        self.shared.get().map(shared::Shared::elsewhere).unwrap_or_default()
    }

    fn stream(&self, stream_id: &str) -> Result<StreamInfo> {
        let stream = self.find_stream(stream_id)?;
        Ok(self.described(&stream))
    }

    async fn delete_stream(&self, stream_id: &str) -> Result<()> {
        let stream = match self.find_stream(stream_id) {
            Ok(stream) if !stream.ephemeral => stream,
            found => {
                if let Some(owner) = self.shared.get().and_then(|shared| shared.owner_of(stream_id)) {
                    return Err(Error::Conflict(format!(
                        "stream {stream_id} belongs to instance {owner}: delete it there"
                    )));
                }
                found?
            }
        };
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
        self.withdraw(stream_id).await;
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
        let stream = self.build_stream(spec, true, None).await?;
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
        let connections = self.open_connections();
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
        let connections = self.open_connections();
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
