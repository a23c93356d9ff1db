//! The stream registry: a stream's renditions checked and probed, its playbacks prepared (shared
//! by all its viewers) and stopped, and the streams looked up by id.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cid::Cid;
use tokio::sync::watch;

use super::{WebRtcHub, new_id};
use crate::clock::now_ms;
use crate::content::NodeKind;
use crate::error::{Error, Result};
use crate::media::playback::Playback;
use crate::media::source::StoreSource;
use crate::media::{Demuxer, MediaError, TrackInfo};
use crate::webrtc::ice::IceServer;
use crate::webrtc::quality::Quality;
use crate::webrtc::service::{
    BenchmarkSample, PlayRequest, RenditionInfo, StreamInfo, StreamSpec, Target, TrackSummary,
};

pub(super) struct Rendition {
    pub(super) quality: Quality,
    pub(super) cid: Cid,
    pub(super) size: u64,
}

/// The playbacks of a stream's renditions, started together.
pub(super) struct Running {
    pub(super) playbacks: Arc<[Arc<Playback>]>,
    /// Stops the watcher.
    pub(super) stop: watch::Sender<bool>,
}

pub(super) struct StreamEntry {
    pub(super) id: String,
    pub(super) spec: StreamSpec,
    pub(super) renditions: Vec<Rendition>,
    pub(super) tracks: Vec<TrackInfo>,
    /// Made for one connection, gone with it.
    pub(super) ephemeral: bool,
    pub(super) created_at_ms: i64,
    /// Demuxers opened when the stream was checked, used by its first playback.
    pub(super) probed: Mutex<Option<Vec<Box<dyn Demuxer>>>>,
    pub(super) running: Mutex<Option<Running>>,
    pub(super) viewers: AtomicUsize,
    pub(super) bitrates: Mutex<Vec<f64>>,
    pub(super) benchmark: Mutex<VecDeque<BenchmarkSample>>,
}

impl StreamEntry {
    pub(super) fn adaptable(&self) -> bool {
        self.renditions.len() > 1
    }

    pub(super) fn qualities(&self) -> Vec<Quality> {
        self.renditions.iter().map(|r| r.quality).collect()
    }

    pub(super) fn playbacks(&self) -> Option<Arc<[Arc<Playback>]>> {
        self.running
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|running| running.playbacks.clone())
    }

    pub(super) fn info(&self) -> StreamInfo {
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
            instance: None,
            playback: playbacks.map(|p| p[0].stats()),
            benchmark: self
                .spec
                .benchmark
                .then(|| self.benchmark.lock().expect("not poisoned").iter().cloned().collect()),
        }
    }
}

impl WebRtcHub {
    /// Opens `cid` as media (a file in the store) on a blocking thread.
    pub(super) async fn open_media(&self, cid: Cid, size: u64, progressive: bool) -> Result<Box<dyn Demuxer>> {
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

    /// Checks the renditions and builds the stream (not yet registered), under `id` or a new one.
    pub(super) async fn build_stream(
        &self,
        spec: StreamSpec,
        ephemeral: bool,
        id: Option<String>,
    ) -> Result<Arc<StreamEntry>> {
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
            id: id.unwrap_or_else(|| new_id("st")),
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
    pub(super) async fn playbacks(self: &Arc<Self>, stream: &Arc<StreamEntry>) -> Result<Arc<[Arc<Playback>]>> {
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

    pub(super) fn find_stream(&self, stream_id: &str) -> Result<Arc<StreamEntry>> {
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

    /// The stream a request plays, made for it when it names a CID.
    pub(super) async fn target(&self, request: &PlayRequest) -> Result<Arc<StreamEntry>> {
        match &request.target {
            Target::Stream(id) => match self.find_stream(id) {
                Ok(stream) => Ok(stream),
                Err(unknown) => self.copy_of_shared(id).await?.ok_or(unknown),
            },
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
                self.build_stream(spec, true, None).await
            }
        }
    }

    /// A local copy of a stream another instance holds, under its id, shared by this instance's
    /// viewers of it and gone with the last of them; `None` when no instance lists it.
    async fn copy_of_shared(&self, stream_id: &str) -> Result<Option<Arc<StreamEntry>>> {
        let Some(shared) = self.shared.get() else {
            return Ok(None);
        };
        let Some(listed) = shared.directory.find(stream_id).await? else {
            return Ok(None);
        };
        let copy = self.build_stream(listed.spec, true, Some(listed.stream_id)).await?;
        let mut streams = self.streams.lock().expect("not poisoned");
        // Two first viewers at once: the one registered first is kept.
        if let Some(registered) = streams.get(stream_id) {
            stop_stream(&copy);
            return Ok(Some(registered.clone()));
        }
        streams.insert(copy.id.clone(), copy.clone());
        Ok(Some(copy))
    }

    /// Stops and forgets a stream made for a connection once nobody watches it.
    pub(super) fn retire_if_unwatched(&self, stream: &Arc<StreamEntry>) {
        if stream.viewers.load(Ordering::Relaxed) > 0 {
            return;
        }
        self.streams.lock().expect("not poisoned").remove(&stream.id);
        stop_stream(stream);
    }
    pub(super) fn created_streams(&self) -> usize {
        created_among(&self.streams.lock().expect("not poisoned"))
    }

    pub(super) fn ice_servers_of(&self, stream: &StreamEntry) -> Vec<IceServer> {
        if stream.spec.ice_servers.is_empty() {
            self.config.peer.ice_servers.clone()
        } else {
            stream.spec.ice_servers.clone()
        }
    }
}

/// Streams created through the API (not made for one connection) among `streams`.
pub(super) fn created_among(streams: &HashMap<String, Arc<StreamEntry>>) -> usize {
    streams.values().filter(|s| !s.ephemeral).count()
}

pub(super) fn stop_stream(stream: &StreamEntry) {
    if let Some(running) = stream.running.lock().expect("not poisoned").take() {
        for playback in running.playbacks.iter() {
            playback.stop();
        }
        let _ = running.stop.send(true);
    }
    stream.probed.lock().expect("not poisoned").take();
}
