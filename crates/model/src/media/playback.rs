//! One stream's playback: a demuxer feeding a frame buffer on a blocking thread, refilled in bursts
//! (prefetches) whenever the fill level falls to the prefetch threshold, and a pacer sending each
//! frame at its timestamp to every viewer of its track (one demux and one buffer per stream, fanned
//! out; a viewer of the video is not woken for the audio). A viewer starts on a keyframe. The
//! buffer's target and threshold grow when playback underflows or the send times jitter, and relax
//! when it runs smoothly, within 1–120 frames and 0.1–0.9.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, watch};

use super::{Demuxer, Frame, MediaError, TrackInfo};

pub const MIN_BUFFER: usize = 1;
pub const MAX_BUFFER: usize = 120;
pub const MIN_THRESHOLD: f64 = 0.1;
pub const MAX_THRESHOLD: f64 = 0.9;
/// A frame sent this much after its time counts as late: the buffer grows.
const LATE_MS: f64 = 40.0;
/// Frames a viewer may fall behind before it misses some.
const VIEWER_QUEUE: usize = 256;

/// Buffer settings of a stream, validated by the caller's request types.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BufferSettings {
    /// Frames the buffer aims to hold.
    pub buffer_size: usize,
    /// Fill level (share of `buffer_size`) at which it is refilled.
    pub prefetch_threshold: f64,
    /// Whether the target and threshold follow underflows and jitter (else they stay as set).
    pub adaptive: bool,
}

impl Default for BufferSettings {
    fn default() -> Self {
        Self {
            buffer_size: 30,
            prefetch_threshold: 0.5,
            adaptive: true,
        }
    }
}

/// The counters of a playback.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PlaybackStats {
    /// Share of the target held now, and its running average.
    pub fill_level: f64,
    pub fill_average: f64,
    pub buffer_target: usize,
    pub prefetch_threshold: f64,
    /// A frame was due and the buffer was empty.
    pub underflows: u64,
    /// Frames sent so late (over a second) that the stream skipped ahead to catch up.
    pub overflows: u64,
    pub prefetches: u64,
    pub frames_sent: u64,
    /// Frames viewers missed because they fell behind.
    pub frames_dropped: u64,
    pub fps: f64,
    pub bitrate_bps: f64,
    /// How late the last frame went out against its timestamp, and the smoothed variation of that.
    pub frame_delay_ms: f64,
    pub jitter_ms: f64,
    pub finished: bool,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
}

struct Buffer {
    frames: VecDeque<Frame>,
    target: usize,
    threshold: f64,
    ended: bool,
    error: Option<MediaError>,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the demuxing thread when the buffer needs frames (or the stream stops).
    refill: Condvar,
    /// Wakes the pacer when frames arrive.
    arrived: Notify,
    stopped: AtomicBool,
    stats: Mutex<PlaybackStats>,
    dropped: AtomicU64,
}

/// A running playback; dropping every handle does not stop it, [`Playback::stop`] does.
pub struct Playback {
    tracks: Vec<TrackInfo>,
    shared: Arc<Shared>,
    /// One queue per track; taken when the stream ends, so viewers see the end.
    frames: Mutex<Option<Vec<broadcast::Sender<Arc<Frame>>>>>,
    initial: BufferSettings,
    /// Becomes true when sending starts.
    started: watch::Sender<bool>,
}

impl Playback {
    /// Starts demuxing and pacing on the current Tokio runtime.
    pub fn start(demuxer: Box<dyn Demuxer>, settings: BufferSettings) -> Arc<Self> {
        let playback = Self::prepare(demuxer, settings);
        playback.play();
        playback
    }

    /// Starts demuxing (the buffer fills) but sends nothing until [`Playback::play`], so the first
    /// frame is ready when the first viewer is, and renditions started together share a clock.
    pub fn prepare(demuxer: Box<dyn Demuxer>, settings: BufferSettings) -> Arc<Self> {
        let settings = BufferSettings {
            buffer_size: settings.buffer_size.clamp(MIN_BUFFER, MAX_BUFFER),
            prefetch_threshold: settings.prefetch_threshold.clamp(MIN_THRESHOLD, MAX_THRESHOLD),
            adaptive: settings.adaptive,
        };
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                frames: VecDeque::new(),
                target: settings.buffer_size,
                threshold: settings.prefetch_threshold,
                ended: false,
                error: None,
            }),
            refill: Condvar::new(),
            arrived: Notify::new(),
            stopped: AtomicBool::new(false),
            stats: Mutex::new(PlaybackStats::default()),
            dropped: AtomicU64::new(0),
        });
        let frames = demuxer
            .tracks()
            .iter()
            .map(|_| broadcast::channel(VIEWER_QUEUE).0)
            .collect();
        let playback = Arc::new(Self {
            tracks: demuxer.tracks().to_vec(),
            shared: shared.clone(),
            frames: Mutex::new(Some(frames)),
            initial: settings,
            started: watch::Sender::new(false),
        });
        let producer = shared.clone();
        tokio::task::spawn_blocking(move || demux(demuxer, &producer));
        playback
    }

    /// Starts sending; later calls do nothing.
    pub fn play(self: &Arc<Self>) {
        if !self.started.send_replace(true) {
            let pacer = self.clone();
            tokio::spawn(async move { pacer.pace().await });
        }
    }

    /// Whether sending has started, as it changes.
    pub fn started(&self) -> watch::Receiver<bool> {
        self.started.subscribe()
    }

    pub fn is_playing(&self) -> bool {
        *self.started.borrow()
    }

    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// A new viewer of `track`; its first frame is a keyframe.
    pub fn subscribe(&self, track: usize) -> Viewer {
        let frames = match self
            .frames
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|all| all.get(track))
        {
            Some(sender) => sender.subscribe(),
            // Ended, or no such track: a receiver whose sender is gone reports the end at once.
            None => broadcast::channel(1).1,
        };
        Viewer {
            frames,
            waiting_for_keyframe: true,
            shared: self.shared.clone(),
        }
    }

    /// Viewers of the track most watched.
    pub fn viewers(&self) -> usize {
        self.frames
            .lock()
            .expect("not poisoned")
            .iter()
            .flatten()
            .map(broadcast::Sender::receiver_count)
            .max()
            .unwrap_or(0)
    }

    pub fn stats(&self) -> PlaybackStats {
        let buffer = self.shared.buffer.lock().expect("not poisoned");
        let mut stats = self.shared.stats.lock().expect("not poisoned").clone();
        stats.fill_level = buffer.frames.len() as f64 / buffer.target as f64;
        stats.buffer_target = buffer.target;
        stats.prefetch_threshold = buffer.threshold;
        stats.frames_dropped = self.shared.dropped.load(Ordering::Relaxed);
        stats.error = buffer.error.as_ref().map(|e| e.to_string());
        stats
    }

    pub fn stop(&self) {
        self.frames.lock().expect("not poisoned").take();
        self.shared.stop();
    }

    pub fn is_finished(&self) -> bool {
        self.shared.stats.lock().expect("not poisoned").finished
    }

    /// Sends every frame at its timestamp; a late buffer stalls the clock rather than rushing.
    async fn pace(&self) {
        let shared = &self.shared;
        let mut clock: Option<Instant> = None;
        let mut last_delay: Option<f64> = None;
        let mut window: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut last_adapt = Instant::now();
        let mut underflows_at_adapt = 0;
        loop {
            if shared.stopped.load(Ordering::Relaxed) {
                break;
            }
            let next = {
                let mut buffer = shared.buffer.lock().expect("not poisoned");
                let frame = buffer.frames.pop_front();
                if (buffer.frames.len() as f64) <= buffer.threshold * buffer.target as f64 {
                    shared.refill.notify_one();
                }
                match frame {
                    Some(frame) => Ok(frame),
                    None => Err(buffer.ended),
                }
            };
            let frame = match next {
                Ok(frame) => frame,
                Err(true) => break,
                Err(false) => {
                    // Nothing to send: an underflow once playback has begun.
                    let waited = Instant::now();
                    if clock.is_some() {
                        shared.stats.lock().expect("not poisoned").underflows += 1;
                    }
                    let notified = shared.arrived.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                    if let Some(start) = clock.as_mut() {
                        *start += waited.elapsed();
                    }
                    continue;
                }
            };
            let start = *clock.get_or_insert_with(|| Instant::now() - frame.timestamp);
            let due = start + frame.timestamp;
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            let delay = now.duration_since(due).as_secs_f64() * 1000.0;
            window.push_back((now, frame.data.len()));
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(1))
            {
                window.pop_front();
            }
            let level = {
                let fill = shared.buffer.lock().expect("not poisoned");
                fill.frames.len() as f64 / fill.target as f64
            };
            {
                // Never hold the stats while taking the buffer: `stats()` takes them the other way.
                let mut stats = shared.stats.lock().expect("not poisoned");
                stats.frames_sent += 1;
                stats.frame_delay_ms = delay;
                if let Some(previous) = last_delay {
                    // RFC 3550's interarrival jitter, on send times.
                    stats.jitter_ms += ((delay - previous).abs() - stats.jitter_ms) / 16.0;
                }
                stats.fps = window.len() as f64;
                stats.bitrate_bps = window.iter().map(|(_, n)| *n as f64 * 8.0).sum();
                stats.fill_average += (level - stats.fill_average) / 32.0;
                if delay > 1000.0 {
                    stats.overflows += 1;
                }
            }
            last_delay = Some(delay);
            if delay > 1000.0 {
                // Far behind (the host stalled): restart the clock here instead of bursting.
                clock = Some(now - frame.timestamp);
            }
            if let Some(sender) = self
                .frames
                .lock()
                .expect("not poisoned")
                .as_ref()
                .and_then(|all| all.get(frame.track))
            {
                let _ = sender.send(Arc::new(frame));
            }
            if last_adapt.elapsed() >= Duration::from_secs(1) {
                last_adapt = Instant::now();
                let stats = shared.stats.lock().expect("not poisoned").clone();
                self.adapt(
                    stats.underflows > underflows_at_adapt,
                    stats.jitter_ms,
                    stats.frame_delay_ms,
                );
                underflows_at_adapt = stats.underflows;
            }
        }
        shared.stats.lock().expect("not poisoned").finished = true;
        self.stop();
    }

    /// More buffer after underflows, jitter or frames going out late; back towards the settings
    /// when smooth and on time.
    fn adapt(&self, underflowed: bool, jitter_ms: f64, delay_ms: f64) {
        if !self.initial.adaptive {
            return;
        }
        let mut buffer = self.shared.buffer.lock().expect("not poisoned");
        if underflowed || jitter_ms > 20.0 || delay_ms > LATE_MS {
            buffer.target = (buffer.target + buffer.target / 4 + 1).min(MAX_BUFFER);
            buffer.threshold = (buffer.threshold + 0.1).min(MAX_THRESHOLD);
        } else if jitter_ms < 5.0 && delay_ms < LATE_MS / 4.0 {
            if buffer.target > self.initial.buffer_size {
                buffer.target -= 1;
            }
            if buffer.threshold > self.initial.prefetch_threshold {
                buffer.threshold = (buffer.threshold - 0.02).max(self.initial.prefetch_threshold);
            }
        }
    }
}

impl Shared {
    fn stop(&self) {
        // Under the buffer's lock, so the demuxing thread cannot miss the wake-up between its
        // check of `stopped` and its wait.
        let _buffer = self.buffer.lock().expect("not poisoned");
        self.stopped.store(true, Ordering::Relaxed);
        self.refill.notify_all();
        self.arrived.notify_waiters();
    }
}

impl Drop for Playback {
    /// A playback nobody holds any more ends its demuxing thread.
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// The demuxing thread: waits until the buffer is down to its threshold, then fills it to its
/// target in one go.
fn demux(mut demuxer: Box<dyn Demuxer>, shared: &Shared) {
    loop {
        {
            let mut buffer = shared.buffer.lock().expect("not poisoned");
            while !shared.stopped.load(Ordering::Relaxed)
                && buffer.frames.len() as f64 > buffer.threshold * buffer.target as f64
            {
                buffer = shared.refill.wait(buffer).expect("not poisoned");
            }
            if shared.stopped.load(Ordering::Relaxed) {
                return;
            }
        }
        shared.stats.lock().expect("not poisoned").prefetches += 1;
        loop {
            let room = {
                let buffer = shared.buffer.lock().expect("not poisoned");
                buffer.frames.len() < buffer.target
            };
            if !room || shared.stopped.load(Ordering::Relaxed) {
                break;
            }
            let next = demuxer.next_frame();
            let mut buffer = shared.buffer.lock().expect("not poisoned");
            match next {
                Ok(Some(frame)) => buffer.frames.push_back(frame),
                Ok(None) => buffer.ended = true,
                Err(error) => {
                    tracing::warn!(%error, "demuxing stopped");
                    buffer.error = Some(error);
                    buffer.ended = true;
                }
            }
            let ended = buffer.ended;
            drop(buffer);
            shared.arrived.notify_waiters();
            if ended {
                return;
            }
        }
    }
}

/// One viewer's frames of one track.
pub struct Viewer {
    frames: broadcast::Receiver<Arc<Frame>>,
    waiting_for_keyframe: bool,
    shared: Arc<Shared>,
}

impl Viewer {
    /// The next frame for this viewer; `None` when the stream has ended.
    pub async fn next(&mut self) -> Option<Arc<Frame>> {
        loop {
            match self.frames.recv().await {
                Ok(frame) => {
                    if self.waiting_for_keyframe && !frame.keyframe {
                        continue;
                    }
                    self.waiting_for_keyframe = false;
                    return Some(frame);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.shared.dropped.fetch_add(missed, Ordering::Relaxed);
                    // Missing frames breaks decoding until the next keyframe.
                    self.waiting_for_keyframe = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::media::open;

    fn fixture(name: &str) -> Box<dyn Demuxer> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/media")
            .join(name);
        let bytes = std::fs::read(path).unwrap();
        let size = bytes.len() as u64;
        open(Box::new(Cursor::new(bytes)), size).unwrap()
    }

    fn ivf() -> Box<dyn Demuxer> {
        fixture("vp8.ivf")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_of_one_track_gets_that_track_alone_from_its_first_keyframe() {
        let playback = Playback::prepare(fixture("vp8-opus.webm"), BufferSettings::default());
        let video = playback.tracks().iter().position(|t| t.codec.is_video()).unwrap();
        let audio = playback.tracks().iter().position(|t| !t.codec.is_video()).unwrap();
        let (mut pictures, mut sound) = (playback.subscribe(video), playback.subscribe(audio));
        assert_eq!(playback.viewers(), 1, "one viewer of each track");
        playback.play();
        let (mut video_frames, mut audio_frames) = (Vec::new(), 0);
        while let Some(frame) = pictures.next().await {
            video_frames.push(frame);
        }
        while let Some(frame) = sound.next().await {
            assert_eq!(frame.track, audio);
            audio_frames += 1;
        }
        assert!(video_frames.iter().all(|frame| frame.track == video));
        assert!(video_frames[0].keyframe);
        assert!(
            video_frames.len() > 10 && audio_frames > 10,
            "{} {audio_frames}",
            video_frames.len()
        );
        assert!(
            playback.subscribe(playback.tracks().len()).next().await.is_none(),
            "no such track"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_are_paced_by_timestamp_and_fanned_out() {
        let playback = Playback::prepare(
            ivf(),
            BufferSettings {
                buffer_size: 10,
                prefetch_threshold: 0.5,
                adaptive: true,
            },
        );
        // Both viewers are in before the first frame goes (a frame sent before a viewer
        // subscribes is not its own: it would start at the next keyframe).
        let (mut a, mut b) = (playback.subscribe(0), playback.subscribe(0));
        playback.play();
        let started = Instant::now();
        let mut received = Vec::new();
        while let Some(frame) = a.next().await {
            received.push(frame.timestamp);
        }
        let elapsed = started.elapsed();
        let mut second = 0;
        while b.next().await.is_some() {
            second += 1;
        }
        assert_eq!(received.len(), 30);
        assert_eq!(second, 30, "both viewers get every frame of one demux");
        // 30 frames at 15 fps take about 2 s: paced, not burst.
        assert!(elapsed >= Duration::from_millis(1800), "{elapsed:?}");
        let stats = playback.stats();
        assert_eq!(stats.frames_sent, 30);
        assert!(stats.prefetches >= 5, "refilled in bursts of ~5: {stats:?}");
        assert!(stats.finished);
        assert!((1..=MAX_BUFFER).contains(&stats.buffer_target));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_buffer_grows_when_frames_go_out_late_and_relaxes_when_on_time() {
        let settings = BufferSettings {
            buffer_size: 10,
            prefetch_threshold: 0.5,
            adaptive: true,
        };
        let playback = Playback::prepare(ivf(), settings);
        let target = || playback.stats().buffer_target;
        playback.adapt(false, 1.0, 2.0 * LATE_MS);
        assert!(target() > 10, "late frames: {}", target());
        assert!(playback.stats().prefetch_threshold > 0.5);
        let grown = target();
        playback.adapt(false, 1.0, 1.0);
        assert_eq!(target(), grown - 1, "on time and smooth: back towards the settings");
        playback.adapt(false, 1.0, LATE_MS / 2.0);
        assert_eq!(target(), grown - 1, "neither late nor on time: held");
        playback.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fixed_buffer_stays_as_set_through_underflows() {
        let settings = BufferSettings {
            buffer_size: 10,
            prefetch_threshold: 0.5,
            adaptive: false,
        };
        let playback = Playback::prepare(ivf(), settings);
        playback.adapt(true, 50.0, 2.0 * LATE_MS);
        let stats = playback.stats();
        assert_eq!((stats.buffer_target, stats.prefetch_threshold), (10, 0.5));
        playback.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_viewer_starts_on_a_keyframe() {
        let playback = Playback::start(ivf(), BufferSettings::default());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut late = playback.subscribe(0);
        let first = late.next().await.unwrap();
        assert!(first.keyframe);
        assert_eq!(first.timestamp, Duration::from_secs(1), "the keyframe after the join");
        playback.stop();
    }
}
