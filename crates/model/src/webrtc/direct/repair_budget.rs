//! How much a connection may send again in answer to NACKs, on top of its media (keyframes sent
//! again on request have their own limit, one each half second). Under congestion a receiver asks
//! for much of what was lost, and answering all of it feeds the congestion: on a link capped below
//! the media, answers to NACKs took more of the link than the media and most of both was dropped.
//! Repairs get a share of the media's own rate, with a floor for slow streams; a NACK's batch goes
//! whole while the budget is positive, and the debt it may leave is at most a second of budget.
//!
//! Where the receiver reports loss, each repair goes in several copies: a repair lost too costs the
//! receiver another round of asking (its own timer, about 100 ms when it does not know the round
//! trip, as a receive-only browser does not), which its picture waits for, a freeze of about 200 ms.
//! The copies are as many as it takes for all of them to be lost rarely, while what they take at
//! that loss stays within a larger share of the media's rate; the budget grows to that share.

use std::time::{Duration, Instant};

/// Repairs may take this share of the media's rate…
const SHARE: f64 = 0.5;
/// …up to this share where the loss calls for more copies…
const MAX_SHARE: f64 = 0.8;
/// …and at least this many bytes per second.
const FLOOR_BYTES_PER_SECOND: f64 = 32_000.0;
/// The budget saved up at most: one second of it.
const BURST: Duration = Duration::from_secs(1);
/// What a new connection may spend before the media's rate is known (after a second): the repairs
/// of its opening keyframe and first frames, which decide how soon the picture starts, at 15% loss
/// and 1 Mbit/s.
const START_BYTES: f64 = 128_000.0;
/// Each repair goes in as many copies as it takes for all of them to be lost at most this often…
const ALL_COPIES_LOST_AT_MOST: f64 = 0.001;
/// …and at most this many.
const MAX_COPIES: usize = 3;
/// What repairs take, for each copy of each lost packet: more than the loss alone, since a receiver
/// asks again for packets whose repair is late, and keyframe requests are answered from the same
/// budget (measured: 3 copies at 15% random loss took 58% of the media's rate).
const REPAIR_OVERHEAD: f64 = 1.3;

pub(super) struct RepairBudget {
    media_bytes_per_second: f64,
    share: f64,
    copies: usize,
    tokens: f64,
    refilled: Instant,
}

impl RepairBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            media_bytes_per_second: 0.0,
            share: SHARE,
            copies: 1,
            tokens: START_BYTES,
            refilled: now,
        }
    }

    fn bytes_per_second(&self) -> f64 {
        (self.media_bytes_per_second * self.share).max(FLOOR_BYTES_PER_SECOND)
    }

    /// The media went at `media_bytes_per_second` lately.
    pub fn follow_media(&mut self, media_bytes_per_second: f64) {
        self.media_bytes_per_second = media_bytes_per_second;
    }

    /// The receiver reported `fraction_lost` of the media's packets lost lately.
    pub fn follow_loss(&mut self, fraction_lost: f64) {
        let fraction_lost = fraction_lost.clamp(0.0, 1.0);
        let takes = |copies: usize| fraction_lost * copies as f64 * REPAIR_OVERHEAD;
        let mut copies = 1;
        let mut all_lost = fraction_lost;
        while all_lost > ALL_COPIES_LOST_AT_MOST && copies < MAX_COPIES && takes(copies + 1) <= MAX_SHARE {
            copies += 1;
            all_lost *= fraction_lost;
        }
        self.copies = copies;
        self.share = takes(copies).clamp(SHARE, MAX_SHARE);
    }

    /// How many copies of each repair go.
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// Whether a batch of `bytes` may go now (taking them from the budget if so).
    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let rate = self.bytes_per_second();
        // Saving up stops at a second's budget; the start's allowance is spent, not cut to it.
        let most = (rate * BURST.as_secs_f64()).max(self.tokens);
        self.tokens = (self.tokens + elapsed * rate).min(most);
        if self.tokens <= 0.0 {
            return false;
        }
        self.tokens = (self.tokens - bytes as f64).max(-rate * BURST.as_secs_f64());
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
        // The start's allowance goes first, and is not saved up again.
        assert!(budget.take(start, START_BYTES as usize - 1_000));
        assert!(budget.take(start, 1_000));
        assert!(!budget.take(start, 1_000));
        // A second later: a big batch goes whole, into debt, at most a second's budget (50 kB);
        // the next batch waits for the debt to be paid.
        let second = start + Duration::from_secs(1);
        assert!(budget.take(second, 100_000));
        assert!(!budget.take(second + Duration::from_millis(100), 1_200));
        assert!(!budget.take(second + Duration::from_millis(900), 1_200));
        assert!(budget.take(second + Duration::from_millis(1100), 1_200));
        // Over ten seconds of steady asking, about the share goes.
        let mut sent = 0;
        for tick in 1..=1000 {
            if budget.take(second + Duration::from_millis(1100 + tick * 10), 1_200) {
                sent += 1_200;
            }
        }
        assert!((470_000..=540_000).contains(&sent), "{sent}");
    }

    #[test]
    fn lossier_links_get_more_copies_of_each_repair_and_a_larger_budget_for_them() {
        let mut budget = RepairBudget::new(Instant::now());
        budget.follow_media(100_000.0);
        let at = |budget: &mut RepairBudget, loss: f64| {
            budget.follow_loss(loss);
            (budget.copies(), (budget.bytes_per_second() / 1000.0).round())
        };
        assert_eq!(at(&mut budget, 0.0), (1, 50.0));
        assert_eq!(at(&mut budget, 0.001), (1, 50.0));
        assert_eq!(at(&mut budget, 0.02), (2, 50.0));
        assert_eq!(at(&mut budget, 0.05), (3, 50.0));
        // Three copies at 16% loss take more than the usual half of the media's rate.
        assert_eq!(at(&mut budget, 0.16), (3, 62.0));
        assert_eq!(at(&mut budget, 0.2), (3, 78.0));
        // Past what the largest share carries, fewer copies: at 25% two, at 35% one.
        assert_eq!(at(&mut budget, 0.25), (2, 65.0));
        assert_eq!(at(&mut budget, 0.35), (1, 50.0));
        assert_eq!(at(&mut budget, 0.9), (1, 80.0));
        // A slow stream keeps its floor.
        budget.follow_media(1_000.0);
        assert_eq!(at(&mut budget, 0.16), (3, 32.0));
    }
}
