//! Congestion control on the direct path: GCC over transport-wide feedback, and where its estimate
//! is published.

use super::*;

/// GCC starting at `initial_bitrate_bps`, within the range an estimate may take.
pub(crate) fn new_gcc(initial_bitrate_bps: f64) -> Gcc {
    Gcc::new(initial_bitrate_bps, MIN_BITRATE_BPS, MAX_BITRATE_BPS)
}

/// The path that carries a peer's media, and so owns its bandwidth estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// The stack's pipeline, with its own congestion controller (until a direct path opens).
    Stack,
    /// The direct path, with GCC of its own over the feedback its socket reads.
    Direct,
}

/// Where the bandwidth estimate of a peer is published. Only the controller of the path that
/// carries the media publishes: once the direct path takes over, the stack's controller sees no
/// media any more, and what it would say is not about this connection.
#[derive(Clone)]
pub(crate) struct EstimateOut {
    pub target: Arc<AtomicU64>,
    pub stats: Arc<Mutex<EstimatorStats>>,
    carried_directly: Arc<AtomicBool>,
}

impl EstimateOut {
    /// An estimate of `initial_bps` until a controller publishes, owned by the stack's path.
    pub fn new(initial_bps: f64) -> Self {
        Self {
            target: Arc::new(AtomicU64::new(initial_bps.to_bits())),
            stats: Arc::new(Mutex::new(EstimatorStats::default())),
            carried_directly: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Who owns the estimate now.
    pub fn carrier(&self) -> Carrier {
        if self.carried_directly.load(Ordering::Relaxed) {
            Carrier::Direct
        } else {
            Carrier::Stack
        }
    }

    /// The media goes on `carrier` from now on, and its controller alone publishes.
    pub fn hand_to(&self, carrier: Carrier) {
        self.carried_directly
            .store(carrier == Carrier::Direct, Ordering::Relaxed);
    }

    /// Publishes `gcc`'s estimate, if `from` carries the media.
    pub fn publish(&self, from: Carrier, gcc: &Gcc) {
        if self.carrier() != from {
            return;
        }
        self.target.store(gcc.target_bitrate().to_bits(), Ordering::Relaxed);
        *self.stats.lock().expect("not poisoned") = gcc.stats();
    }
}

/// The record of what was sent that GCC matches feedback against, and GCC.
pub(super) struct Congestion {
    pub(super) history: TransportHistory,
    pub(super) gcc: Gcc,
}

impl DirectPath {
    pub(super) fn on_transport_cc(&self, feedback: &TransportLayerCc, now: Instant) {
        let mut congestion = self.congestion.lock().expect("not poisoned");
        let mut probing = self.probing.lock().expect("not poisoned");
        for acknowledgement in convert_twcc(feedback) {
            let arrival = acknowledgement.arrival.filter(|_| acknowledgement.arrived);
            probing.acknowledge(acknowledgement.sequence_number, arrival, now);
            congestion.history.acknowledge(acknowledgement);
        }
        drop(probing);
        let reports = congestion.history.take_reports();
        if !reports.is_empty() {
            congestion.gcc.on_reports(now, &reports);
            self.estimate.publish(Carrier::Direct, &congestion.gcc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_path_that_carries_the_media_publishes_its_estimate() {
        let out = EstimateOut::new(1_000_000.0);
        let stack = new_gcc(300_000.0);
        let direct = new_gcc(700_000.0);
        let published = || f64::from_bits(out.target.load(Ordering::Relaxed));
        out.publish(Carrier::Direct, &direct);
        assert_eq!(published(), 1_000_000.0, "the direct path does not carry the media yet");
        out.publish(Carrier::Stack, &stack);
        assert_eq!(published(), stack.target_bitrate());
        out.hand_to(Carrier::Direct);
        out.publish(Carrier::Stack, &stack);
        out.publish(Carrier::Direct, &direct);
        assert_eq!(published(), direct.target_bitrate());
        assert_eq!(out.carrier(), Carrier::Direct);
    }
}
