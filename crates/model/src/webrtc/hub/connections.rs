//! The connection registry: a connection's place reserved within the limits, its peer set up on
//! the media runtime with the stream's playbacks attached, looked up by id, and ended once
//! (closed, recorded, announced, its streams retired when made for it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::streams::StreamEntry;
use super::{WebRtcHub, new_id};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::notifications::{CloseReason, Event, PlayTarget, WebrtcErrorSubject};
use crate::stream_records::{Direction, Outcome, StreamType};
use crate::stream_session::{StreamOpening, StreamSession};
use crate::webrtc::peer::{Peer, PeerEvent, Source};
use crate::webrtc::quality::{Quality, rendition_for};
use crate::webrtc::service::{ConnectionInfo, PlayRequest, Target};

pub(super) struct Connection {
    pub(super) pc_id: String,
    pub(super) stream: Arc<StreamEntry>,
    /// Streams added to this connection with `add_track`.
    pub(super) added: Mutex<Vec<Arc<StreamEntry>>>,
    pub(super) peer: Arc<Peer>,
    pub(super) quality: Mutex<Quality>,
    pub(super) selected: watch::Sender<usize>,
    pub(super) created_at_ms: i64,
    pub(super) created: Instant,
    /// The connection's accounting: open in the live counters, recorded when it ends.
    pub(super) session: Arc<Mutex<StreamSession>>,
}

impl Connection {
    pub(super) fn info(&self) -> ConnectionInfo {
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

/// A place counted in a gauge while it lives.
pub(super) struct Reservation<'a>(&'a AtomicUsize);

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
    /// A connection playing `request`, its peer built and media attached (no SDP exchanged yet).
    pub(super) async fn connect(
        self: &Arc<Self>,
        request: &PlayRequest,
    ) -> Result<(Arc<Connection>, mpsc::Receiver<PeerEvent>)> {
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

    pub(super) async fn build_connection(
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
        let opening = StreamOpening {
            stream_type: StreamType::Webrtc,
            direction: Direction::Outbound,
            path: stream.spec.cid.to_string(),
            content: stream.spec.cid.to_string(),
            chunk_size: 0,
            correlation_id: pc_id.clone(),
        };
        let session = Arc::new(Mutex::new(StreamSession::open(
            opening,
            Some(&self.live),
            Some(self.metrics.clone()),
        )));
        let on_sent = {
            let session = session.clone();
            Arc::new(move |bytes: u64| session.lock().expect("not poisoned").count(bytes))
                as Arc<dyn Fn(u64) + Send + Sync>
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
            session,
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

    /// Sends `stream` on the connection as well, and the offer that renegotiates it.
    pub(super) async fn attach_and_offer(
        self: &Arc<Self>,
        connection: &Connection,
        stream: &Arc<StreamEntry>,
    ) -> Result<String> {
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

    /// The open connections, taken out of the lock.
    pub(super) fn open_connections(&self) -> Vec<Arc<Connection>> {
        self.connections
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn find_connection(&self, pc_id: &str) -> Result<Arc<Connection>> {
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

    /// Removes and closes a connection, records it, and retires its streams if made for it.
    pub(super) async fn finish(&self, pc_id: &str, reason: CloseReason) -> Result<()> {
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
        self.counters
            .frames_sent
            .fetch_add(stats.frames_sent, Ordering::Relaxed);
        self.counters.bytes_sent.fetch_add(stats.bytes_sent, Ordering::Relaxed);
        let outcome = if reason.aborted() {
            Outcome::Aborted
        } else {
            Outcome::Ok
        };
        connection.session.lock().expect("not poisoned").end(outcome, |_| {});
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
}
