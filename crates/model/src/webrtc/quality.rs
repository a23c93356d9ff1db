//! Quality presets and adaptive switching between a stream's renditions.
//!
//! A fixed preset picks the rendition registered for it (or the nearest). `auto` starts on the
//! lowest rendition and follows the congestion controller: down at once when the estimate no longer
//! carries the current rendition or loss is high, up only after the estimate has carried the next
//! one with headroom for a while (hysteresis; twice as long after each step up that had to be
//! undone), and never twice within the hold time.
//!
//! The estimate grows while the stream sends less than it allows, so on its own it says little
//! about a rate never sent. Where the path can probe (send a short burst at a chosen rate and
//! measure what arrives), a step up also needs a probe to have shown the headroom:
//! [`AdaptiveSwitch::probe_for`] says when and at what rate to probe.

use std::time::{Duration, Instant};

/// A quality preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    High,
    Auto,
}

impl Quality {
    pub const ALL: [Quality; 4] = [Quality::Low, Quality::Medium, Quality::High, Quality::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Auto => "auto",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|quality| quality.as_str() == name)
    }

    /// The preset's nominal bitrate (the seeds' ladder: 500 kbps, 1 Mbps, 2.5 Mbps), used until a
    /// rendition's own bitrate has been measured.
    pub fn nominal_bitrate_bps(self) -> f64 {
        match self {
            Self::Low => 500_000.0,
            Self::Medium | Self::Auto => 1_000_000.0,
            Self::High => 2_500_000.0,
        }
    }
}

/// The rendition a fixed preset plays: its own, else the nearest below, else the lowest.
/// `renditions` are ordered from low to high.
pub fn rendition_for(quality: Quality, renditions: &[Quality]) -> usize {
    if let Some(exact) = renditions.iter().position(|q| *q == quality) {
        return exact;
    }
    renditions.iter().rposition(|q| *q < quality).unwrap_or(0)
}

/// Above this loss the stream steps down whatever the estimate says.
const LOSS_DOWN: f64 = 0.10;
/// Up only while loss is below this.
const LOSS_UP: f64 = 0.02;
/// Up only when the estimate exceeds the next rendition's bitrate by this factor…
const UP_HEADROOM: f64 = 1.3;
/// …continuously for this long.
const UP_AFTER: Duration = Duration::from_secs(4);
/// A step up undone within this time failed: the estimate, which grows while the stream sends less
/// than it allows, had not been tried. The wait before the next try doubles…
const FAILED_UP_WINDOW: Duration = Duration::from_secs(10);
/// …up to this.
const MAX_UP_AFTER: Duration = Duration::from_secs(64);
/// No switch within this time of the last one.
const HOLD: Duration = Duration::from_secs(2);
/// A probe goes this much above the rate a step up needs, so that a path that carries it shows
/// the headroom with room to spare.
const PROBE_MARGIN: f64 = 1.25;

/// The `auto` decision of one viewer.
#[derive(Clone, Debug)]
pub struct AdaptiveSwitch {
    current: usize,
    headroom_since: Option<Instant>,
    last_switch: Option<Instant>,
    /// How long the headroom must last before a step up.
    up_after: Duration,
    /// The last step up, while it may still turn out to have failed.
    stepped_up_at: Option<Instant>,
}

impl AdaptiveSwitch {
    pub fn new(start: usize) -> Self {
        Self {
            current: start,
            headroom_since: None,
            last_switch: None,
            up_after: UP_AFTER,
            stepped_up_at: None,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// Takes a rendition chosen elsewhere (a fixed preset the viewer asked for) as the one
    /// playing; a change counts as a switch for the hold time.
    pub fn follow(&mut self, now: Instant, current: usize) {
        if current != self.current {
            self.headroom_since = None;
            self.switch(now, current);
        }
    }

    /// The rendition to play given the estimate, the loss and each rendition's bitrate (low to
    /// high), on a path that cannot probe; `Some` when that is a switch.
    pub fn decide(&mut self, now: Instant, estimate_bps: f64, loss: f64, bitrates: &[f64]) -> Option<usize> {
        self.decide_probed(now, estimate_bps, None, loss, bitrates)
    }

    /// The rate to probe the path at, when the estimate allows the next rendition up but no probe
    /// has shown that the path carries it (`probed_bps`: what the latest probe measured, `None`
    /// where the path cannot probe); not while loss is too high to step up.
    pub fn probe_for(&self, estimate_bps: f64, probed_bps: Option<f64>, loss: f64, bitrates: &[f64]) -> Option<f64> {
        let probed = probed_bps?;
        let up = self.current + 1;
        if up >= bitrates.len() || loss >= LOSS_UP {
            return None;
        }
        let needed = bitrates[up] * UP_HEADROOM;
        (estimate_bps > needed && probed <= needed).then_some(needed * PROBE_MARGIN)
    }

    /// [`AdaptiveSwitch::decide`] where the path probes: a step up also needs `probed_bps`, what
    /// the latest probe measured, to carry the next rendition with headroom. Steps down follow the
    /// estimate alone.
    pub fn decide_probed(
        &mut self,
        now: Instant,
        estimate_bps: f64,
        probed_bps: Option<f64>,
        loss: f64,
        bitrates: &[f64],
    ) -> Option<usize> {
        if bitrates.len() < 2 || !estimate_bps.is_finite() {
            return None;
        }
        self.current = self.current.min(bitrates.len() - 1);
        let held = self.last_switch.is_some_and(|at| now.duration_since(at) < HOLD);
        let carries_current = estimate_bps >= bitrates[self.current];
        if self
            .stepped_up_at
            .is_some_and(|at| now.duration_since(at) >= FAILED_UP_WINDOW)
        {
            // The step up held: the next one waits the usual time.
            self.stepped_up_at = None;
            self.up_after = UP_AFTER;
        }
        if self.current > 0 && (loss > LOSS_DOWN || !carries_current) {
            self.headroom_since = None;
            if held {
                return None;
            }
            if self.stepped_up_at.take().is_some() {
                self.up_after = (self.up_after * 2).min(MAX_UP_AFTER);
            }
            return Some(self.switch(now, self.current - 1));
        }
        let up = self.current + 1;
        let shown = estimate_bps.min(probed_bps.unwrap_or(f64::INFINITY));
        if up < bitrates.len() && loss < LOSS_UP && shown > bitrates[up] * UP_HEADROOM {
            let since = *self.headroom_since.get_or_insert(now);
            if now.duration_since(since) >= self.up_after && !held {
                self.headroom_since = None;
                self.stepped_up_at = Some(now);
                return Some(self.switch(now, up));
            }
        } else {
            self.headroom_since = None;
        }
        None
    }

    fn switch(&mut self, now: Instant, to: usize) -> usize {
        self.current = to;
        self.last_switch = Some(now);
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [f64; 3] = [500_000.0, 1_000_000.0, 2_500_000.0];

    #[test]
    fn fixed_presets_pick_their_rendition_or_the_nearest_below() {
        let ladder = [Quality::Low, Quality::Medium, Quality::High];
        assert_eq!(rendition_for(Quality::Medium, &ladder), 1);
        assert_eq!(rendition_for(Quality::High, &[Quality::Low, Quality::Medium]), 1);
        assert_eq!(rendition_for(Quality::Low, &[Quality::Medium, Quality::High]), 0);
        assert_eq!(Quality::parse("auto"), Some(Quality::Auto));
        assert_eq!(Quality::parse("ultra"), None);
    }

    #[test]
    fn steps_up_only_after_sustained_headroom() {
        let start = Instant::now();
        let mut abr = AdaptiveSwitch::new(0);
        // 1.5 Mbps carries medium (1 Mbps) with 30% headroom.
        assert_eq!(abr.decide(start, 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(
            abr.decide(start + Duration::from_secs(2), 1_500_000.0, 0.0, &LADDER),
            None
        );
        // A dip resets the wait.
        assert_eq!(
            abr.decide(start + Duration::from_secs(3), 1_100_000.0, 0.0, &LADDER),
            None
        );
        assert_eq!(
            abr.decide(start + Duration::from_secs(4), 1_500_000.0, 0.0, &LADDER),
            None
        );
        assert_eq!(
            abr.decide(start + Duration::from_secs(8), 1_500_000.0, 0.0, &LADDER),
            Some(1)
        );
        // Not enough for high: stays.
        assert_eq!(
            abr.decide(start + Duration::from_secs(20), 3_000_000.0, 0.0, &LADDER),
            None
        );
        assert_eq!(abr.current(), 1);
    }

    #[test]
    fn steps_down_at_once_on_a_low_estimate_or_loss_but_holds_between_switches() {
        let start = Instant::now();
        let mut abr = AdaptiveSwitch::new(2);
        assert_eq!(abr.decide(start, 2_000_000.0, 0.0, &LADDER), Some(1));
        // Within the hold time, even a worse estimate waits.
        assert_eq!(
            abr.decide(start + Duration::from_secs(1), 600_000.0, 0.0, &LADDER),
            None
        );
        assert_eq!(
            abr.decide(start + Duration::from_secs(3), 600_000.0, 0.0, &LADDER),
            Some(0)
        );
        let mut lossy = AdaptiveSwitch::new(1);
        assert_eq!(lossy.decide(start, 5_000_000.0, 0.2, &LADDER), Some(0));
        // Never below the lowest, never up with loss.
        assert_eq!(lossy.decide(start + Duration::from_secs(10), 100.0, 0.5, &LADDER), None);
        assert_eq!(
            lossy.decide(start + Duration::from_secs(20), 5_000_000.0, 0.05, &LADDER),
            None
        );
    }

    #[test]
    fn a_step_up_undone_at_once_doubles_the_wait_for_the_next() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut abr = AdaptiveSwitch::new(0);
        // The estimate says medium fits; after 4 s of it, up.
        assert_eq!(abr.decide(at(0), 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(4), 1_500_000.0, 0.0, &LADDER), Some(1));
        // Medium does not fit after all: loss, down at once.
        assert_eq!(abr.decide(at(6), 1_500_000.0, 0.2, &LADDER), Some(0));
        // The next try waits 8 s of headroom, not 4.
        assert_eq!(abr.decide(at(8), 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(12), 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(16), 1_500_000.0, 0.0, &LADDER), Some(1));
        // Failing again: 16 s.
        assert_eq!(abr.decide(at(18), 1_500_000.0, 0.2, &LADDER), Some(0));
        assert_eq!(abr.decide(at(20), 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(35), 1_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(36), 1_500_000.0, 0.0, &LADDER), Some(1));
        // This one holds past the window: the wait is back to 4 s for the step after it.
        assert_eq!(abr.decide(at(47), 3_500_000.0, 0.0, &LADDER), None);
        assert_eq!(abr.decide(at(51), 3_500_000.0, 0.0, &LADDER), Some(2));
    }

    #[test]
    fn a_rendition_chosen_elsewhere_is_where_auto_goes_on_from() {
        let start = Instant::now();
        // Started on low, then the viewer asked for high, then went back to auto.
        let mut abr = AdaptiveSwitch::new(0);
        abr.follow(start, 2);
        assert_eq!(abr.current(), 2);
        // High does not fit 1.2 Mbps: down to medium once the hold time is over.
        assert_eq!(
            abr.decide(start + Duration::from_secs(1), 1_200_000.0, 0.0, &LADDER),
            None
        );
        assert_eq!(
            abr.decide(start + Duration::from_secs(3), 1_200_000.0, 0.0, &LADDER),
            Some(1)
        );
    }

    #[test]
    fn where_the_path_probes_a_step_up_waits_for_a_probe_that_carries_it() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut abr = AdaptiveSwitch::new(0);
        // The estimate says 5 Mbps (it grew while low sent 500 kbps); nothing probed yet: probe
        // above what medium needs (1 Mbps with 30% headroom), and stay.
        assert_eq!(
            abr.probe_for(5e6, Some(0.0), 0.0, &LADDER),
            Some(1_300_000.0 * PROBE_MARGIN)
        );
        assert_eq!(abr.decide_probed(at(0), 5e6, Some(0.0), 0.0, &LADDER), None);
        assert_eq!(abr.decide_probed(at(10), 5e6, Some(0.0), 0.0, &LADDER), None);
        // The probe met a 600 kbit/s link: still no step up, and probing goes on.
        assert_eq!(abr.decide_probed(at(20), 5e6, Some(600_000.0), 0.0, &LADDER), None);
        assert!(abr.probe_for(5e6, Some(600_000.0), 0.0, &LADDER).is_some());
        // A probe that carried 1.6 Mbps: up once that has lasted the usual time.
        assert_eq!(abr.probe_for(5e6, Some(1.6e6), 0.0, &LADDER), None);
        assert_eq!(abr.decide_probed(at(30), 5e6, Some(1.6e6), 0.0, &LADDER), None);
        assert_eq!(abr.decide_probed(at(34), 5e6, Some(1.6e6), 0.0, &LADDER), Some(1));
        // Not probed while lossy, nor past the top, nor where the estimate itself is short.
        assert_eq!(abr.probe_for(5e6, Some(0.0), LOSS_UP, &LADDER), None);
        assert_eq!(abr.probe_for(2e6, Some(0.0), 0.0, &LADDER), None);
        assert_eq!(AdaptiveSwitch::new(2).probe_for(50e6, Some(0.0), 0.0, &LADDER), None);
        // A path that cannot probe is never asked to, and steps on the estimate alone.
        assert_eq!(abr.probe_for(50e6, None, 0.0, &LADDER), None);
        // Steps down follow the estimate, whatever was probed.
        assert_eq!(abr.decide_probed(at(40), 800_000.0, Some(9e6), 0.0, &LADDER), Some(0));
    }

    #[test]
    fn one_rendition_or_a_nan_estimate_never_switches() {
        let mut abr = AdaptiveSwitch::new(0);
        assert_eq!(abr.decide(Instant::now(), 10e6, 0.0, &[1e6]), None);
        let mut abr = AdaptiveSwitch::new(1);
        assert_eq!(abr.decide(Instant::now(), f64::NAN, 0.0, &LADDER), None);
    }
}
