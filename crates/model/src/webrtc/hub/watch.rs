//! Follows each stream's playbacks: announces its start and end, passes underflows, drops and
//! overflows to the counters, measures its renditions' bitrates, keeps benchmark samples.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::WebRtcHub;
use super::streams::StreamEntry;
use crate::clock::now_ms;
use crate::media::playback::{Playback, PlaybackStats};
use crate::notifications::{Event, StreamEndReason};
use crate::webrtc::service::BenchmarkSample;

impl WebRtcHub {
    /// Follows a stream's playbacks each second: announces start and end, passes underflows to
    /// the live counters, measures rendition bitrates, keeps benchmark samples.
    pub(super) async fn watch_stream(
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
}
