//! The stack's media path, for a relayed or TCP pair or with the direct path off: frames are
//! written as samples to a track of the WebRTC stack, which packetizes, paces and protects them
//! through its interceptor chain; the stack's GCC publishes the estimate while this path carries
//! the media.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};
use rtc::media::Sample;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

use super::direct::{Carrier, EstimateOut};
use super::sink::{Delivery, MediaSink};
use crate::media::Frame;

/// The pacer releases packets at this multiple of the bandwidth estimate, as libwebrtc's pacer
/// does by default. A keyframe is many average frames in one: paced at the estimate itself, the
/// 120 KB first keyframe of a 1 Mbps stream took half a second to leave, and every frame after it
/// waited behind it.
pub(crate) const PACING_FACTOR: f64 = 2.5;

/// Until the first congestion feedback, the pacer runs at this rate: with its bucket of a tenth of
/// a second, the first 125 KB of a session (a typical first keyframe) leave at once, as streaming
/// servers burst their cached GOP to start a player fast. From the first feedback on, the pacer
/// follows the estimate.
pub(crate) const FAST_START_BPS: f64 = 10_000_000.0;

/// GCC whose target and statistics are published where the peer can read them. The pacer is given
/// the target times [`PACING_FACTOR`] (or [`FAST_START_BPS`] before any feedback); what is
/// published, and what quality decisions use, is the target itself.
pub(crate) struct PublishedEstimate {
    pub gcc: Gcc,
    pub out: EstimateOut,
    /// Whether any congestion feedback has arrived.
    pub informed: bool,
}

impl PublishedEstimate {
    fn publish(&self) {
        self.out.publish(Carrier::Stack, &self.gcc);
    }
}

impl BandwidthEstimator for PublishedEstimate {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.informed = true;
        self.gcc.on_reports(now, reports);
        self.publish();
    }

    /// What the pacer is asked for.
    fn target_bitrate(&self) -> f64 {
        let paced = self.gcc.target_bitrate() * PACING_FACTOR;
        if self.informed {
            paced
        } else {
            paced.max(FAST_START_BPS)
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
        self.publish();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// RTP packets each viewer's track keeps for answering NACKs (a power of two).
pub(crate) const NACK_BUFFER: u16 = 256;

/// A track of the stack's, and how its packets are stamped.
pub(crate) struct StackSink {
    pub local: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub payload_type: u8,
}

impl MediaSink for StackSink {
    const HOLDS_FRAMES: bool = true;

    async fn send(&self, frame: &Arc<Frame>, duration: Duration) -> Delivery {
        let sample = Sample {
            data: frame.data.clone(),
            duration,
            ..Sample::new(Instant::now())
        };
        match self
            .local
            .write_sample(self.ssrc, self.payload_type, &sample, &[])
            .await
        {
            Ok(_) => Delivery::Sent,
            Err(error) => {
                tracing::debug!(%error, "sample not sent");
                Delivery::Gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn the_pacer_starts_fast_then_runs_ahead_of_the_published_estimate() {
        let out = EstimateOut::new(0.0);
        let target = out.target.clone();
        let mut estimate = PublishedEstimate {
            gcc: crate::webrtc::direct::new_gcc(1_000_000.0),
            out,
            informed: false,
        };
        assert_eq!(estimate.target_bitrate(), FAST_START_BPS);
        estimate.on_reports(Instant::now(), &[]);
        let published = f64::from_bits(target.load(Ordering::Relaxed));
        assert_eq!(estimate.target_bitrate(), published * PACING_FACTOR);
        assert!(published <= 1_000_000.0, "what is published is GCC's own target");
    }
}
