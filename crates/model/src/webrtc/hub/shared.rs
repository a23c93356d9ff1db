//! The hub's part in the directory of instances sharing a database: its streams listed there,
//! the others' read every [`BEAT_EVERY`], its beat, and the streams of silent instances ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use super::WebRtcHub;
use super::streams::StreamEntry;
use crate::clock::now_ms;
use crate::error::Result;
use crate::notifications::{Event, StreamEndReason};
use crate::webrtc::directory::{BEAT_EVERY, SILENCE, SharedStream, StreamDirectory};
use crate::webrtc::service::StreamInfo;

pub(super) struct Shared {
    pub(super) directory: Arc<dyn StreamDirectory>,
    /// This instance's key in the directory, and its name.
    owner: String,
    owner_name: String,
    /// The other instances' streams, as last read.
    others: Mutex<Vec<SharedStream>>,
    /// Whether the directory was out of reach at the last beat (said once, not every beat).
    unreachable: AtomicBool,
}

impl Shared {
    /// The other instances' streams, as their instances described them.
    pub(super) fn elsewhere(&self) -> Vec<Value> {
        self.others
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|stream| {
                let mut info = stream.info.clone();
                if let Value::Object(fields) = &mut info {
                    fields.insert("instance".into(), Value::String(stream.owner_name.clone()));
                    fields.insert("state".into(), Value::String("elsewhere".into()));
                    fields.insert("viewers".into(), Value::from(0));
                    fields.remove("playback");
                }
                info
            })
            .collect()
    }

    /// The name of the instance holding a stream of another instance.
    pub(super) fn owner_of(&self, stream_id: &str) -> Option<String> {
        self.others
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|stream| stream.stream_id == stream_id)
            .map(|stream| stream.owner_name.clone())
    }
}

impl WebRtcHub {
    /// Lists this hub's streams in `directory` (under `owner`, shown as `owner_name`) and follows
    /// the other instances' streams, for as long as the hub lives. Beats once before returning,
    /// so that no instance takes this one for gone.
    pub async fn share_streams(
        self: &Arc<Self>,
        directory: Arc<dyn StreamDirectory>,
        owner: &str,
        owner_name: &str,
    ) -> Result<()> {
        directory.beat(now_ms()).await?;
        let shared = Shared {
            directory,
            owner: owner.to_owned(),
            owner_name: owner_name.to_owned(),
            others: Mutex::new(Vec::new()),
            unreachable: AtomicBool::new(false),
        };
        if self.shared.set(shared).is_err() {
            return Ok(());
        }
        self.refresh().await;
        let hub = Arc::downgrade(self);
        self.runtime.spawn(follow(hub));
        Ok(())
    }

    /// The stream as clients see it: with its instance's name where streams are shared.
    pub(super) fn described(&self, stream: &StreamEntry) -> StreamInfo {
        let mut info = stream.info();
        info.instance = self.shared.get().map(|shared| shared.owner_name.clone());
        info
    }

    pub(super) async fn announce(&self, stream: &StreamEntry, info: &StreamInfo) -> Result<()> {
        let Some(shared) = self.shared.get() else { return Ok(()) };
        shared
            .directory
            .announce(&SharedStream {
                stream_id: stream.id.clone(),
                owner: shared.owner.clone(),
                owner_name: shared.owner_name.clone(),
                spec: stream.spec.clone(),
                info: serde_json::to_value(info).expect("stream info serializes"),
                created_at_ms: stream.created_at_ms,
            })
            .await
    }

    /// Marks a stream of this instance ended in the directory (a failure is logged: the silence
    /// of this instance would end it anyway).
    pub(super) async fn withdraw(&self, stream_id: &str) {
        let Some(shared) = self.shared.get() else { return };
        if let Err(error) = shared.directory.withdraw(stream_id, now_ms()).await {
            tracing::warn!(%error, stream_id, "stream not marked ended in the directory");
        }
    }

    /// Beats, ends the streams of silent instances, and reads the others' streams.
    async fn refresh(&self) {
        let Some(shared) = self.shared.get() else { return };
        let now = now_ms();
        if let Err(error) = shared.directory.beat(now).await {
            if !shared.unreachable.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "the stream directory is out of reach; trying again every beat");
            }
            return;
        }
        if shared.unreachable.swap(false, Ordering::Relaxed) {
            tracing::info!("the stream directory is within reach again");
        }
        match shared.directory.reap(now - SILENCE.as_millis() as i64, now).await {
            Ok(ended) => {
                for stream in ended {
                    tracing::warn!(
                        stream_id = stream.stream_id,
                        instance = stream.owner_name,
                        "stream ended: its instance stopped answering"
                    );
                    self.notify(Event::WebrtcStreamEnded {
                        stream_id: stream.stream_id,
                        cid: stream.spec.cid.to_string(),
                        reason: StreamEndReason::InstanceLost,
                        frames_sent: 0,
                        underflows: 0,
                        error: Some(format!("instance {} stopped answering", stream.owner_name)),
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "streams of silent instances not ended"),
        }
        match shared.directory.live().await {
            Ok(mut live) => {
                live.retain(|stream| stream.owner != shared.owner);
                *shared.others.lock().expect("not poisoned") = live;
            }
            Err(error) => tracing::warn!(%error, "the other instances' streams not read"),
        }
    }
}

async fn follow(hub: Weak<WebRtcHub>) {
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.refresh().await;
    }
}
