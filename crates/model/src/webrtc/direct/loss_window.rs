//! The share of a track's packets lost, from what its receiver reports. A report's own "fraction
//! lost" covers only the packets since the receiver's previous report, and a browser sends one
//! with every NACK, a few packets apart: at 15% loss they read 0%, 33%, 50%, 8%... This takes the
//! reports' running counters (highest sequence number, packets lost) instead, over windows of at
//! least [`WINDOW_PACKETS`] packets.

/// The fewest packets a window covers.
const WINDOW_PACKETS: u32 = 100;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LossWindow {
    /// Where the current window starts: the extended highest sequence number and the packets lost.
    start: Option<(u32, u32)>,
    /// The share lost over the last whole window.
    fraction_lost: Option<f64>,
}

impl LossWindow {
    /// A report's extended highest sequence number and cumulative packets lost (24 bits, signed);
    /// returns the share lost over the last whole window, if one has passed.
    pub fn report(&mut self, highest_sequence: u32, total_lost: u32) -> Option<f64> {
        let Some((start_sequence, start_lost)) = self.start else {
            self.start = Some((highest_sequence, total_lost));
            return self.fraction_lost;
        };
        let expected = highest_sequence.wrapping_sub(start_sequence);
        if expected > u32::MAX / 2 {
            // The receiver went back (a new stream of its own): start again.
            self.start = Some((highest_sequence, total_lost));
        } else if expected >= WINDOW_PACKETS {
            let lost = sign_extend_24(total_lost.wrapping_sub(start_lost) & 0x00ff_ffff);
            self.fraction_lost = Some((f64::from(lost) / f64::from(expected)).clamp(0.0, 1.0));
            self.start = Some((highest_sequence, total_lost));
        }
        self.fraction_lost
    }

    /// The share lost over the last whole window, if one has passed.
    pub fn fraction_lost(&self) -> Option<f64> {
        self.fraction_lost
    }
}

fn sign_extend_24(value: u32) -> i32 {
    ((value << 8) as i32) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_taken_over_windows_of_packets_not_per_report() {
        let mut window = LossWindow::default();
        assert_eq!(window.report(1000, 0), None);
        // Reports a few packets apart say nothing until a window has passed…
        assert_eq!(window.report(1003, 1), None);
        assert_eq!(window.report(1050, 8), None);
        // …then the share over it: 15 of 100.
        assert_eq!(window.report(1100, 15), Some(0.15));
        assert_eq!(window.report(1110, 20), Some(0.15));
        assert_eq!(window.report(1300, 25), Some(0.05));
        // Duplicates can make the count of lost packets go down (it is signed): no loss, not a
        // wrapped count.
        assert_eq!(window.report(1400, 20), Some(0.0));
        // A 24-bit count that wraps.
        let mut window = LossWindow::default();
        window.report(5000, 0x00ff_fff0);
        assert_eq!(window.report(5200, 0x0000_0004), Some(0.1));
    }

    #[test]
    fn a_receiver_that_goes_back_starts_a_new_window() {
        let mut window = LossWindow::default();
        window.report(70_000, 10);
        assert_eq!(window.report(100, 0), None);
        assert_eq!(window.report(300, 40), Some(0.2));
    }
}
