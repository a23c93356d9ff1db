//! How much a connection may send again in answer to NACKs, on top of its media (keyframes sent
//! again on request have their own limit, one each half second). Under congestion a receiver asks
//! for much of what was lost, and answering all of it feeds the congestion: on a link capped below
//! the media, answers to NACKs took more of the link than the media and most of both was dropped.
//! Repairs get a share of the media's own rate, with a floor for slow streams; a NACK's batch goes
//! whole while the budget is positive, and the debt it may leave is at most a second of budget.

use std::time::{Duration, Instant};

/// Repairs may take this share of the media's rate…
const SHARE: f64 = 0.5;
/// …and at least this many bytes per second.
const FLOOR_BYTES_PER_SECOND: f64 = 32_000.0;
/// The budget saved up at most: one second of it.
const BURST: Duration = Duration::from_secs(1);

pub(super) struct RepairBudget {
    bytes_per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl RepairBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            bytes_per_second: FLOOR_BYTES_PER_SECOND,
            tokens: FLOOR_BYTES_PER_SECOND * BURST.as_secs_f64(),
            refilled: now,
        }
    }

    /// The media went at `media_bytes_per_second` lately.
    pub fn follow_media(&mut self, media_bytes_per_second: f64) {
        self.bytes_per_second = (media_bytes_per_second * SHARE).max(FLOOR_BYTES_PER_SECOND);
    }

    /// Whether a batch of `bytes` may go now (taking them from the budget if so).
    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.bytes_per_second).min(self.bytes_per_second * BURST.as_secs_f64());
        if self.tokens <= 0.0 {
            return false;
        }
        self.tokens = (self.tokens - bytes as f64).max(-self.bytes_per_second * BURST.as_secs_f64());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_keep_to_a_share_of_the_media() {
        let start = Instant::now();
        let mut budget = RepairBudget::new(start);
        budget.follow_media(100_000.0);
        // A big batch goes whole, into debt, at most a second's budget (50 kB); the next batch waits
        // for the debt to be paid.
        assert!(budget.take(start, 100_000));
        assert!(!budget.take(start + Duration::from_millis(100), 1_200));
        assert!(!budget.take(start + Duration::from_millis(900), 1_200));
        assert!(budget.take(start + Duration::from_millis(1100), 1_200));
        // Over ten seconds of steady asking, about the share goes.
        let mut sent = 0;
        for tick in 1..=1000 {
            if budget.take(start + Duration::from_millis(1100 + tick * 10), 1_200) {
                sent += 1_200;
            }
        }
        assert!((470_000..=540_000).contains(&sent), "{sent}");
    }
}
