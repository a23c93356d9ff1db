//! One track's frames on their way out. [`forward`] follows the selected rendition (switching at
//! the new one's first keyframe, so the picture never breaks) and hands each frame to the track's
//! [`MediaSink`]: the stack's path ([`super::stack_path::StackSink`]) or the direct path
//! ([`super::direct::DirectTrack`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::peer::Source;
use crate::media::Frame;
use crate::media::playback::Viewer;

/// Where one track's frames go.
pub(crate) trait MediaSink: Send + Sync + 'static {
    /// Whether a frame waits for the next one, whose timestamp says how long it lasts (the stack's
    /// RTP clock advances by a sample's duration); the direct path stamps each frame with its own
    /// timestamp and sends it at once.
    const HOLDS_FRAMES: bool;

    /// Sends one frame lasting `duration`.
    fn send(&self, frame: &Arc<Frame>, duration: Duration) -> impl Future<Output = Delivery> + Send;
}

impl<S: MediaSink> MediaSink for Arc<S> {
    const HOLDS_FRAMES: bool = S::HOLDS_FRAMES;

    fn send(&self, frame: &Arc<Frame>, duration: Duration) -> impl Future<Output = Delivery> + Send {
        S::send(self, frame, duration)
    }
}

/// What became of a frame handed to a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    /// Lost as on the network (the socket refused it; NACKs may bring its packets back): the
    /// track goes on.
    Lost,
    /// The track is gone: nothing more can be sent.
    Gone,
}

/// Counters shared by a peer's forwarders.
#[derive(Default)]
pub(crate) struct Sent {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
}

/// One track's sink and the counters of what it sent.
pub(crate) struct Output<S> {
    pub sink: S,
    pub sent: Arc<Sent>,
    pub on_sent: Arc<dyn Fn(u64) + Send + Sync>,
}

/// Sends one track's frames. The stack takes them as samples, each lasting until the track's next
/// frame begins (the RTP clock advances by it), so a frame is held until the next one comes; the
/// direct path stamps each frame with its own timestamp and sends it at once. A switch of
/// rendition subscribes to the new one and goes on sending the old until the new one's first
/// keyframe, so the picture never breaks.
pub(crate) async fn forward<S: MediaSink>(
    mut source: Source,
    track: usize,
    output: Output<S>,
    subscribed: Arc<tokio::sync::Barrier>,
) {
    let selected = *source.selected.borrow_and_update();
    let mut current = source.renditions[selected].subscribe(track);
    // A track whose codec the remote refused never arrives: the others go on after a while.
    let _ = tokio::time::timeout(Duration::from_secs(2), subscribed.wait()).await;
    // Subscribed first, so the first frame of a playback starting now is not missed. All the
    // renditions start together, so they share a clock.
    for rendition in source.renditions.iter() {
        rendition.play();
    }
    let needs_duration = S::HOLDS_FRAMES;
    let mut pending: Option<Viewer> = None;
    let mut held: Option<Arc<Frame>> = None;
    let mut last_sent: Option<Duration> = None;
    let mut selectable = true;
    loop {
        let next = tokio::select! {
            frame = current.next() => frame,
            frame = async { pending.as_mut().expect("guarded").next().await }, if pending.is_some() => {
                match frame {
                    // The new rendition's first frame is a keyframe: switch here. Renditions share a
                    // clock, so the old one may have reached the same instant: the new keyframe takes
                    // the place of a frame held for that instant. Behind what was sent already, it
                    // would break the timeline: wait for the next keyframe instead.
                    Some(frame) => {
                        let behind = match (&held, last_sent) {
                            (Some(previous), _) => frame.timestamp < previous.timestamp,
                            (None, Some(sent)) => frame.timestamp <= sent,
                            (None, None) => false,
                        };
                        if behind {
                            pending = Some(source.renditions[*source.selected.borrow()].subscribe(track));
                            continue;
                        }
                        current = pending.take().expect("guarded");
                        if held.as_ref().is_some_and(|previous| previous.timestamp == frame.timestamp) {
                            held = Some(frame);
                            continue;
                        }
                        Some(frame)
                    }
                    None => {
                        pending = None;
                        continue;
                    }
                }
            }
            changed = source.selected.changed(), if selectable => {
                match changed {
                    Ok(()) => {
                        let selected = *source.selected.borrow_and_update();
                        if let Some(rendition) = source.renditions.get(selected) {
                            pending = Some(rendition.subscribe(track));
                        }
                    }
                    // Nobody can select any more (a fixed source): stop watching, or this
                    // branch would be ready forever.
                    Err(_) => selectable = false,
                }
                continue;
            }
        };
        if let Some(previous) = held.take() {
            let duration = match &next {
                Some(next) if next.timestamp > previous.timestamp => next.timestamp - previous.timestamp,
                _ => previous.duration,
            };
            if !send(&output, &previous, duration).await {
                return;
            }
            last_sent = Some(previous.timestamp);
        }
        let Some(frame) = next else { return };
        // The direct path holds a frame only while a switch is pending, so that the new
        // rendition's keyframe may take its place. The first frame goes at once when its
        // container says how long it lasts: held for the next one's timestamp, the first picture
        // would wait a frame.
        let first_with_duration = last_sent.is_none() && !frame.duration.is_zero();
        if (needs_duration || pending.is_some()) && !first_with_duration {
            held = Some(frame);
            continue;
        }
        if !send(&output, &frame, frame.duration).await {
            return;
        }
        last_sent = Some(frame.timestamp);
    }
}

/// Sends one frame lasting `duration` and counts it; false once the track is gone.
async fn send<S: MediaSink>(output: &Output<S>, frame: &Arc<Frame>, duration: Duration) -> bool {
    match output.sink.send(frame, duration).await {
        Delivery::Sent => {}
        Delivery::Lost => return true,
        Delivery::Gone => return false,
    }
    let bytes = frame.data.len() as u64;
    output.sent.frames.fetch_add(1, Ordering::Relaxed);
    output.sent.bytes.fetch_add(bytes, Ordering::Relaxed);
    (output.on_sent)(bytes);
    true
}
