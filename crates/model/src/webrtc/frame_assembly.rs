//! A receiver's frame assembly: RTP packets put back in sequence order, held while a gap may
//! still be repaired (a NACK's answer, a reordered packet), and handed out as whole frames. A gap
//! that stays open past the wait is given up: the frames it broke are dropped, and what follows is
//! marked as coming after a gap, which a decoder cannot use until the next keyframe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Packets held at most: past this a gap is given up whatever the wait.
const MAX_HELD: usize = 1024;

/// One packet as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Packet {
    pub timestamp: u32,
    /// The last packet of its frame (every audio packet is a frame of its own).
    pub marker: bool,
    pub payload_type: u8,
    pub payload: Bytes,
}

/// A whole frame's packets, in order.
#[derive(Debug)]
pub(crate) struct Assembled {
    pub packets: Vec<Packet>,
    /// Frames before it were given up since the last frame handed out.
    pub after_gap: bool,
}

pub(crate) struct FrameAssembly {
    held: BTreeMap<u64, Packet>,
    /// The first sequence number of the next frame to hand out.
    next: Option<u64>,
    highest: Option<u64>,
    /// Since when the gap at `next` has had later packets waiting behind it.
    waiting_since: Option<Instant>,
    wait: Duration,
    gap_given_up: bool,
    /// Frames given up for good.
    pub frames_given_up: u64,
    /// Packets that came after a later one of the stream (repaired or reordered).
    pub late: u64,
    /// Packets that came after their frame was handed out or given up.
    pub too_late: u64,
}

impl FrameAssembly {
    /// An assembly that holds a gap open for `wait` before giving it up.
    pub fn new(wait: Duration) -> Self {
        Self {
            held: BTreeMap::new(),
            next: None,
            highest: None,
            waiting_since: None,
            wait,
            gap_given_up: false,
            frames_given_up: 0,
            late: 0,
            too_late: 0,
        }
    }

    /// `sequence` extended to 64 bits, nearest the highest seen.
    fn extend(&self, sequence: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Far enough from zero that nothing wraps below it.
            return (1 << 32) + u64::from(sequence);
        };
        let base = (highest & !0xffff) | u64::from(sequence);
        [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .min_by_key(|candidate| candidate.abs_diff(highest))
            .expect("three candidates")
    }

    /// Takes a packet in and hands out the frames it completes, in order.
    pub fn push(&mut self, sequence: u16, packet: Packet, now: Instant) -> Vec<Assembled> {
        let extended = self.extend(sequence);
        if self.next.is_some_and(|next| extended < next) || self.held.contains_key(&extended) {
            self.too_late += 1;
            return Vec::new();
        }
        if self.highest.is_some_and(|highest| extended < highest) {
            self.late += 1;
        }
        self.highest = Some(self.highest.map_or(extended, |highest| highest.max(extended)));
        self.next.get_or_insert(extended);
        self.held.insert(extended, packet);
        self.hand_out(now)
    }

    fn hand_out(&mut self, now: Instant) -> Vec<Assembled> {
        let mut out = Vec::new();
        loop {
            if let Some(frame) = self.whole_frame_at_next() {
                out.push(frame);
                self.waiting_since = None;
                continue;
            }
            if self.held.is_empty() {
                return out;
            }
            let since = *self.waiting_since.get_or_insert(now);
            if now.duration_since(since) < self.wait && self.held.len() < MAX_HELD {
                return out;
            }
            if !self.give_up_gap() {
                return out;
            }
        }
    }

    fn whole_frame_at_next(&mut self) -> Option<Assembled> {
        let start = self.next?;
        let timestamp = self.held.get(&start)?.timestamp;
        let mut end = start;
        loop {
            let packet = self.held.get(&end)?;
            if packet.timestamp != timestamp {
                // The frame's last packet never came, and the next frame began: it is broken.
                return None;
            }
            if packet.marker {
                break;
            }
            end += 1;
        }
        let packets = (start..=end)
            .map(|sequence| self.held.remove(&sequence).expect("walked"))
            .collect();
        self.next = Some(end + 1);
        Some(Assembled {
            packets,
            after_gap: std::mem::take(&mut self.gap_given_up),
        })
    }

    /// Drops what the gap at `next` broke, up to the first frame start known past it: the packet
    /// after a frame's last one. False when no such start is known yet (and there is still room
    /// to wait for one).
    fn give_up_gap(&mut self) -> bool {
        let Some(next) = self.next else { return false };
        let start = self
            .held
            .iter()
            .find(|(sequence, packet)| **sequence >= next && packet.marker)
            .map(|(sequence, _)| sequence + 1);
        let resume = match start {
            Some(start) => start,
            None if self.held.len() >= MAX_HELD => self.highest.map_or(next, |highest| highest + 1),
            None => return false,
        };
        let dropped: Vec<u64> = self.held.range(..resume).map(|(sequence, _)| *sequence).collect();
        let mut timestamps: Vec<u32> = dropped
            .iter()
            .filter_map(|sequence| self.held.remove(sequence))
            .map(|packet| packet.timestamp)
            .collect();
        timestamps.dedup();
        // A gap with nothing of its frame held still lost that frame.
        self.frames_given_up += timestamps.len().max(1) as u64;
        self.next = Some(resume);
        self.waiting_since = None;
        self.gap_given_up = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(timestamp: u32, marker: bool) -> Packet {
        Packet {
            timestamp,
            marker,
            payload_type: 96,
            payload: Bytes::from_static(b"x"),
        }
    }

    /// Frames of three packets each, timestamps 0, 3000, 6000...: packet `sequence`'s.
    fn of_frames(sequence: u16) -> Packet {
        packet(u32::from(sequence / 3) * 3000, sequence % 3 == 2)
    }

    #[test]
    fn a_repaired_gap_hands_out_every_frame_in_order() {
        let mut assembly = FrameAssembly::new(Duration::from_millis(500));
        let now = Instant::now();
        let mut out = Vec::new();
        for sequence in [0u16, 1, 2, 3, 5, 6, 7, 8] {
            out.extend(assembly.push(sequence, of_frames(sequence), now));
        }
        assert_eq!(
            out.len(),
            1,
            "the second frame waits for its packet 4, the third behind it"
        );
        out.extend(assembly.push(4, of_frames(4), now + Duration::from_millis(100)));
        let timestamps: Vec<u32> = out.iter().map(|frame| frame.packets[0].timestamp).collect();
        assert_eq!(timestamps, [0, 3000, 6000]);
        assert!(out.iter().all(|frame| !frame.after_gap && frame.packets.len() == 3));
        assert_eq!((assembly.late, assembly.frames_given_up), (1, 0));
    }

    #[test]
    fn a_gap_past_the_wait_is_given_up_and_marks_what_follows() {
        let mut assembly = FrameAssembly::new(Duration::from_millis(500));
        let now = Instant::now();
        let mut out = Vec::new();
        for sequence in [0u16, 1, 2, 3, 5, 6, 7, 8] {
            out.extend(assembly.push(sequence, of_frames(sequence), now));
        }
        out.extend(assembly.push(9, of_frames(9), now + Duration::from_millis(600)));
        let timestamps: Vec<u32> = out.iter().map(|frame| frame.packets[0].timestamp).collect();
        assert_eq!(timestamps, [0, 6000]);
        assert!(out[1].after_gap);
        assert_eq!(assembly.frames_given_up, 1);
        // The lost packet comes at last: too late, left out.
        assert!(
            assembly
                .push(4, of_frames(4), now + Duration::from_millis(700))
                .is_empty()
        );
        assert_eq!(assembly.too_late, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut assembly = FrameAssembly::new(Duration::from_millis(500));
        let now = Instant::now();
        let mut out = Vec::new();
        for sequence in [65534u16, 65535, 0] {
            out.extend(assembly.push(sequence, packet(9000, sequence == 0), now));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].packets.len(), 3);
    }
}
