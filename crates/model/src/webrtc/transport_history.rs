//! What the direct path sent, by transport-wide sequence number, for matching TWCC feedback:
//! a ring indexed by the sequence number itself, so recording a packet and finding it again are
//! an array access each (the stack's own record keeps hash maps, at several lookups a packet).

use std::time::Instant;

use rtc::interceptor::{Acknowledgement, PacketReport};

/// Packets remembered: 2.5 s at 4 Mbps, 9 s at 1 Mbps. Feedback comes every 50–100 ms, and a
/// viewer's memory is counted in kilobytes.
const SLOTS: u64 = 1024;

#[derive(Clone, Copy)]
struct Slot {
    /// The extended sequence number (no wrap) of the packet in this slot.
    id: u64,
    ssrc: u32,
    rtp_sequence_number: u16,
    size: usize,
    departure: Instant,
    acknowledgement: Option<Acknowledgement>,
}

pub(crate) struct TransportHistory {
    slots: Box<[Option<Slot>]>,
    /// The extended sequence number the next packet gets; its low 16 bits go on the wire.
    next_id: u64,
    /// Reports go out in send order, from here…
    next_to_report: u64,
    /// …up to the newest packet the remote says arrived.
    highest_arrived: Option<u64>,
}

impl TransportHistory {
    /// A history whose first packet gets transport-wide sequence number `first`.
    pub fn starting_at(first: u16) -> Self {
        Self {
            slots: vec![None; SLOTS as usize].into_boxed_slice(),
            next_id: u64::from(first),
            next_to_report: u64::from(first),
            highest_arrived: None,
        }
    }

    /// The transport-wide sequence number the next packet recorded gets.
    pub fn next_sequence(&self) -> u16 {
        self.next_id as u16
    }

    /// Records a packet leaving; returns the transport-wide sequence number to stamp on it.
    pub fn record(&mut self, ssrc: u32, rtp_sequence_number: u16, size: usize, departure: Instant) -> u16 {
        let id = self.next_id;
        self.next_id += 1;
        self.slots[(id % SLOTS) as usize] = Some(Slot {
            id,
            ssrc,
            rtp_sequence_number,
            size,
            departure,
            acknowledgement: None,
        });
        id as u16
    }

    /// The extended sequence number a 16-bit one stands for: the one nearest the newest sent.
    fn extend(&self, sequence_number: u16) -> Option<u64> {
        let newest = self.next_id.checked_sub(1)?;
        let behind = (newest as u16).wrapping_sub(sequence_number);
        let id = newest.checked_sub(u64::from(behind))?;
        (newest - id < SLOTS).then_some(id)
    }

    /// Applies what feedback says of one packet; unknown or forgotten packets are ignored.
    pub fn acknowledge(&mut self, acknowledgement: Acknowledgement) {
        let Some(id) = self.extend(acknowledgement.sequence_number) else {
            return;
        };
        let Some(slot) = self.slots[(id % SLOTS) as usize].as_mut().filter(|slot| slot.id == id) else {
            return;
        };
        slot.acknowledgement = Some(acknowledgement);
        if acknowledgement.arrived && self.highest_arrived.is_none_or(|highest| id > highest) {
            self.highest_arrived = Some(id);
        }
    }

    /// Everything up to the newest packet that arrived, in send order, once: packets before it
    /// the feedback did not report as arrived count as lost.
    pub fn take_reports(&mut self) -> Vec<PacketReport> {
        let Some(highest) = self.highest_arrived else {
            return Vec::new();
        };
        let start = self.next_to_report.max(self.next_id.saturating_sub(SLOTS));
        let mut reports = Vec::with_capacity(highest.saturating_sub(start) as usize + 1);
        for id in start..=highest {
            let Some(slot) = self.slots[(id % SLOTS) as usize].filter(|slot| slot.id == id) else {
                continue;
            };
            let acknowledgement = slot.acknowledgement.unwrap_or_else(|| Acknowledgement::lost(id as u16));
            reports.push(PacketReport {
                ssrc: slot.ssrc,
                id,
                rtp_sequence_number: slot.rtp_sequence_number,
                is_twcc: true,
                twcc_sequence_number: id as u16,
                size: slot.size,
                arrived: acknowledgement.arrived,
                departure: slot.departure,
                arrival: acknowledgement.arrival,
                ecn: acknowledgement.ecn,
            });
        }
        self.next_to_report = self.next_to_report.max(highest + 1);
        reports
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    use super::*;

    fn arrived(sequence_number: u16, at_ms: u64) -> Acknowledgement {
        Acknowledgement::received(sequence_number, Some(Duration::from_millis(at_ms)), Ecn::NotEct)
    }

    #[test]
    fn feedback_gives_reports_in_send_order_across_the_wrap_with_gaps_as_lost() {
        let start = Instant::now();
        let mut history = TransportHistory::starting_at(65534);
        let stamped: Vec<u16> = (0..4u16).map(|i| history.record(7, 100 + i, 1200, start)).collect();
        assert_eq!(stamped, [65534, 65535, 0, 1]);
        assert!(history.take_reports().is_empty(), "nothing acknowledged yet");

        history.acknowledge(arrived(65534, 10));
        history.acknowledge(Acknowledgement::lost(65535));
        history.acknowledge(arrived(1, 12));
        let reports = history.take_reports();
        let seen: Vec<(u16, bool)> = reports.iter().map(|r| (r.twcc_sequence_number, r.arrived)).collect();
        assert_eq!(seen, [(65534, true), (65535, false), (0, false), (1, true)]);
        assert_eq!(reports[3].rtp_sequence_number, 103);
        assert_eq!(reports[3].arrival, Some(Duration::from_millis(12)));
        assert!(reports.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert!(history.take_reports().is_empty(), "each packet is reported once");
    }

    #[test]
    fn feedback_for_packets_never_sent_or_long_forgotten_is_ignored() {
        let start = Instant::now();
        let mut history = TransportHistory::starting_at(0);
        history.acknowledge(arrived(5, 1));
        assert!(history.take_reports().is_empty());
        for i in 0..(SLOTS as u16 + 10) {
            history.record(1, i, 100, start);
        }
        history.acknowledge(arrived(3, 1));
        assert!(history.take_reports().is_empty(), "sequence 3 was overwritten");
    }
}
