//! Bandwidth probes on the direct path. GCC's estimate grows while the stream sends less than it
//! allows, so it cannot say whether the path carries a rate never sent: a step up to a higher
//! rendition was the first real test of it, and froze the picture where the path could not. A
//! probe is that test at small cost: a short cluster of packets paced at the rate in question
//! (copies of the video's latest packets, over RTX where negotiated, which a receiver drops as
//! duplicates), whose arrival times TWCC feedback reports. The rate the cluster arrived at, no
//! more than it was sent at, is what the path carries beside the media now.

use super::*;

/// Packets in a probe cluster: enough to measure a spacing, few enough (some 12 KB) that a slow
/// link's queue holds them.
const PROBE_PACKETS: usize = 10;
/// At most one probe in this time.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A probe result counts this long: past the wait a step up needs, until the next probe renews it.
const PROBE_VALID: Duration = Duration::from_secs(12);
/// A cluster whose feedback is not all in by then is measured with what came.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// A cluster measures something only if this share of it arrived.
const MIN_ARRIVED_SHARE: f64 = 0.8;

/// One packet of a probe cluster: when it left, its size on the wire, and what feedback said.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProbePacket {
    pub departure: Instant,
    pub size: usize,
    /// `None` until feedback reports it; then its arrival on the receiver's clock, if it came.
    pub arrival: Option<Option<Duration>>,
}

/// The probing state of a path: the cluster whose feedback is awaited, and the last result.
#[derive(Default)]
pub(super) struct Probing {
    /// By transport-wide sequence number.
    cluster: Vec<(u16, ProbePacket)>,
    started: Option<Instant>,
    result: Option<(f64, Instant)>,
    pub(super) sent: u64,
}

impl Probing {
    /// Whether a probe may start now (none within [`PROBE_INTERVAL`]); if so, it has.
    pub fn start(&mut self, now: Instant) -> bool {
        if self.started.is_some_and(|at| now.duration_since(at) < PROBE_INTERVAL) {
            return false;
        }
        self.cluster.clear();
        self.started = Some(now);
        true
    }

    /// A packet of the current cluster left.
    pub fn sent(&mut self, transport_sequence: u16, departure: Instant, size: usize) {
        self.sent += 1;
        self.cluster.push((
            transport_sequence,
            ProbePacket {
                departure,
                size,
                arrival: None,
            },
        ));
    }

    /// What feedback says of a packet; the cluster is measured once all of it is reported, or
    /// [`PROBE_DEADLINE`] after it started.
    pub fn acknowledge(&mut self, transport_sequence: u16, arrival: Option<Duration>, now: Instant) {
        if let Some((_, packet)) = self
            .cluster
            .iter_mut()
            .find(|(sequence, _)| *sequence == transport_sequence)
        {
            packet.arrival = Some(arrival);
        }
        let complete = self.cluster.len() == PROBE_PACKETS && self.cluster.iter().all(|(_, p)| p.arrival.is_some());
        let late = self.started.is_some_and(|at| now.duration_since(at) >= PROBE_DEADLINE);
        if !self.cluster.is_empty() && (complete || late) {
            let packets: Vec<ProbePacket> = self.cluster.drain(..).map(|(_, packet)| packet).collect();
            if let Some(rate) = cluster_rate(&packets) {
                self.result = Some((rate, now));
            }
        }
    }

    /// The rate the latest probe showed, while it counts.
    pub fn shown(&self, now: Instant) -> Option<f64> {
        self.result
            .filter(|(_, at)| now.duration_since(*at) < PROBE_VALID)
            .map(|(rate, _)| rate)
    }
}

/// The rate a cluster made it through at, in bits per second: the rate its packets arrived at
/// (the bytes after the first over the time from the first arrival to the last), no more than the
/// rate they were sent at; `None` when too little of it arrived to say.
pub(super) fn cluster_rate(packets: &[ProbePacket]) -> Option<f64> {
    let mut arrived: Vec<(Duration, usize)> = packets
        .iter()
        .filter_map(|packet| packet.arrival.flatten().map(|at| (at, packet.size)))
        .collect();
    if arrived.len() < 3 || (arrived.len() as f64) < packets.len() as f64 * MIN_ARRIVED_SHARE {
        return None;
    }
    arrived.sort_by_key(|(at, _)| *at);
    let receiving = arrived.last()?.0.saturating_sub(arrived[0].0).as_secs_f64();
    let received: usize = arrived[1..].iter().map(|(_, size)| size).sum();
    let first = packets.iter().map(|p| p.departure).min()?;
    let last = packets.iter().map(|p| p.departure).max()?;
    let sending = last.duration_since(first).as_secs_f64();
    let sent: usize = packets.iter().map(|p| p.size).sum::<usize>() - packets.last()?.size;
    if receiving <= 0.0 || sending <= 0.0 {
        return None;
    }
    Some((received as f64 * 8.0 / receiving).min(sent as f64 * 8.0 / sending))
}

impl DirectPath {
    /// Probes the path at `rate_bps` unless a probe went within [`PROBE_INTERVAL`]: copies of the
    /// video's latest packets, paced at that rate, from a task of their own.
    pub fn probe(self: &Arc<Self>, rate_bps: f64) {
        if !rate_bps.is_finite() || rate_bps <= 0.0 || !self.can_probe() {
            return;
        }
        let Some(track) = self.tracks().into_iter().find(|track| track.codec.is_video()) else {
            return;
        };
        let packets: Vec<SentPacket> = {
            let mut state = track.state.lock().expect("not poisoned");
            if state.history.len() < PROBE_PACKETS || !self.probing.lock().expect("not poisoned").start(Instant::now())
            {
                return;
            }
            let from = state.history.len() - PROBE_PACKETS;
            let mut packets: Vec<SentPacket> = state.history.range(from..).cloned().collect();
            if track.rtx.is_some() {
                for packet in &mut packets {
                    packet.rtx_sequence = Some(state.next_rtx_sequence);
                    state.next_rtx_sequence = state.next_rtx_sequence.wrapping_add(1);
                }
            }
            packets
        };
        let path = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut bytes = 0usize;
            for packet in &packets {
                // Each packet leaves when the bytes before it would have at `rate_bps`.
                let due = started + Duration::from_secs_f64(bytes as f64 * 8.0 / rate_bps);
                tokio::time::sleep_until(due.into()).await;
                match path.send_probe_packet(&track, packet).await {
                    Ok(size) => bytes += size,
                    Err(error) => {
                        tracing::debug!(%error, "probe not sent");
                        return;
                    }
                }
            }
        });
    }

    /// Whether this path can probe: probes are measured from transport-wide feedback.
    pub fn can_probe(&self) -> bool {
        self.transport_cc.is_some()
    }

    /// The rate the latest probe showed the path carries beside the media, while it counts.
    pub fn probed_bps(&self) -> Option<f64> {
        self.probing.lock().expect("not poisoned").shown(Instant::now())
    }

    /// Sends one probe packet, recorded in the probe's cluster; returns its size on the wire.
    async fn send_probe_packet(&self, track: &DirectTrack, packet: &SentPacket) -> io::Result<usize> {
        let departure = Instant::now();
        let (datagrams, sequences) = self.protect(track, std::slice::from_ref(packet), departure)?;
        let size = datagrams[0].len();
        if let Some(sequence) = sequences[0] {
            self.probing
                .lock()
                .expect("not poisoned")
                .sent(sequence, departure, size);
        }
        self.send_datagrams(&datagrams).await?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(spacing_sent_ms: u64, spacing_arrived_ms: Option<u64>, lost: &[usize]) -> Vec<ProbePacket> {
        let start = Instant::now();
        (0..PROBE_PACKETS)
            .map(|index| ProbePacket {
                departure: start + Duration::from_millis(spacing_sent_ms * index as u64),
                size: 1250,
                arrival: Some(
                    spacing_arrived_ms
                        .filter(|_| !lost.contains(&index))
                        .map(|ms| Duration::from_millis(500 + ms * index as u64)),
                ),
            })
            .collect()
    }

    #[test]
    fn a_cluster_measures_the_rate_it_arrived_at_no_more_than_it_was_sent_at() {
        // 1250 bytes every 5 ms is 2 Mbit/s.
        let sent_at_2_mbps = 2_000_000.0;
        // A free path: it arrives as sent.
        let free = cluster_rate(&cluster(5, Some(5), &[])).unwrap();
        assert!((free - sent_at_2_mbps).abs() < 1.0, "{free}");
        // A 500 kbit/s link spreads it out to 20 ms a packet.
        let slow = cluster_rate(&cluster(5, Some(20), &[])).unwrap();
        assert!((slow - 500_000.0).abs() < 1.0, "{slow}");
        // Arriving bunched up (a queue released at once) says no more than the sending rate.
        let bunched = cluster_rate(&cluster(5, Some(1), &[])).unwrap();
        assert!((bunched - sent_at_2_mbps).abs() < 1.0, "{bunched}");
        // One packet lost of ten still measures; three do not.
        assert!(cluster_rate(&cluster(5, Some(5), &[4])).is_some());
        assert_eq!(cluster_rate(&cluster(5, Some(5), &[1, 4, 7])), None);
        assert_eq!(cluster_rate(&cluster(5, None, &[])), None);
    }

    #[test]
    fn probes_are_spaced_measured_when_reported_and_forgotten_in_time() {
        let now = Instant::now();
        let mut probing = Probing::default();
        assert!(probing.start(now));
        assert!(
            !probing.start(now + Duration::from_secs(1)),
            "one in {PROBE_INTERVAL:?}"
        );
        for (index, packet) in cluster(5, Some(20), &[]).into_iter().enumerate() {
            probing.sent(100 + index as u16, packet.departure, packet.size);
        }
        assert_eq!(probing.shown(now), None, "nothing reported yet");
        for index in 0..PROBE_PACKETS {
            probing.acknowledge(
                100 + index as u16,
                Some(Duration::from_millis(500 + 20 * index as u64)),
                now,
            );
        }
        let shown = probing.shown(now).unwrap();
        assert!((shown - 500_000.0).abs() < 1.0, "{shown}");
        assert_eq!(probing.shown(now + PROBE_VALID), None, "a result counts for a while");
        assert!(probing.start(now + PROBE_INTERVAL));
    }
}
