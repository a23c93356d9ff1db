//! RTCP on the direct path: sender reports each second, and what comes back: receiver reports
//! (loss, jitter, round trip), transport-wide feedback, NACKs answered from the record of what
//! was sent, keyframe requests answered with the frames from the latest keyframe on, again.

use super::*;

/// A NACK for a packet is answered at most this many times (each time with the budget's copies):
/// a receiver that keeps asking for one it got would otherwise spend the repair budget on it, and
/// three answers all lost is rare even at 15% loss.
const MAX_RESENDS: u8 = 3;
/// The least and most time between two answers to NACKs for one packet.
const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(20);
const MAX_RESEND_INTERVAL: Duration = Duration::from_millis(500);

impl DirectPath {
    /// Sender reports, and the estimator's own timers.
    pub(super) async fn on_tick(&self) {
        let now = Instant::now();
        {
            let mut congestion = self.congestion.lock().expect("not poisoned");
            congestion.gcc.handle_timeout(now);
            self.estimate.publish(Carrier::Direct, &congestion.gcc);
        }
        self.follow_media_rate(now);
        let ntp = ntp_now();
        for track in self.tracks() {
            let report = {
                let state = track.state.lock().expect("not poisoned");
                let Some((rtp_time, at)) = state.last else { continue };
                SenderReport {
                    ssrc: track.ssrc,
                    ntp_time: ntp,
                    rtp_time: rtp_time
                        .wrapping_add((now.duration_since(at).as_secs_f64() * f64::from(track.clock_rate)) as u32),
                    packet_count: state.packets,
                    octet_count: state.octets,
                    ..Default::default()
                }
            };
            {
                let mut sent = self.reports_sent.lock().expect("not poisoned");
                if sent.len() >= 16 {
                    sent.pop_front();
                }
                sent.push_back(((ntp >> 16) as u32, now));
            }
            if let Err(error) = self.send_rtcp(&report).await {
                tracing::debug!(%error, "sender report not sent");
            }
        }
    }

    /// One RTCP datagram from the remote, as the path's reader takes it from the socket (the work
    /// is short, and a NACK's answer is sent from a task of its own).
    pub(super) fn on_rtcp(self: &Arc<Self>, datagram: &[u8]) {
        let now = Instant::now();
        let Ok(plain) = self.remote.lock().expect("not poisoned").decrypt_rtcp(datagram) else {
            return;
        };
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut plain.freeze()) else {
            return;
        };
        for packet in packets {
            let packet = packet.as_any();
            if let Some(feedback) = packet.downcast_ref::<TransportLayerCc>() {
                self.on_transport_cc(feedback, now);
            } else if let Some(nack) = packet.downcast_ref::<TransportLayerNack>() {
                self.on_nack(nack);
            } else if let Some(report) = packet.downcast_ref::<ReceiverReport>() {
                self.on_receiver_report(report, now);
            } else if let Some(request) = packet.downcast_ref::<PictureLossIndication>() {
                self.on_keyframe_request(request.media_ssrc);
            } else if let Some(request) = packet.downcast_ref::<FullIntraRequest>() {
                for entry in &request.fir {
                    self.on_keyframe_request(entry.ssrc);
                }
            }
        }
    }

    pub(super) fn track_of(&self, ssrc: u32) -> Option<Arc<DirectTrack>> {
        self.tracks().into_iter().find(|track| track.ssrc == ssrc)
    }

    pub(super) fn on_receiver_report(&self, report: &ReceiverReport, now: Instant) {
        for block in &report.reports {
            let Some(track) = self.track_of(block.ssrc) else {
                continue;
            };
            let fraction_lost = {
                let mut state = track.state.lock().expect("not poisoned");
                let reception = state.reception.get_or_insert_default();
                reception.jitter_ms = f64::from(block.jitter) * 1000.0 / f64::from(track.clock_rate);
                reception.loss.report(block.last_sequence_number, block.total_lost)
            };
            if let Some(fraction_lost) = fraction_lost {
                // The loss of the path, whichever of its tracks reported it last.
                self.repair_budget
                    .lock()
                    .expect("not poisoned")
                    .follow_loss(fraction_lost);
            }
            if block.last_sender_report == 0 {
                continue;
            }
            let sent = self
                .reports_sent
                .lock()
                .expect("not poisoned")
                .iter()
                .find(|(middle, _)| *middle == block.last_sender_report)
                .map(|(_, at)| *at);
            if let Some(sent) = sent {
                let delay = Duration::from_secs_f64(f64::from(block.delay) / 65536.0);
                let rtt = now.saturating_duration_since(sent).saturating_sub(delay);
                *self.rtt_ms.lock().expect("not poisoned") = Some(rtt.as_secs_f64() * 1000.0);
            }
        }
    }

    /// A receiver that asks for a keyframe (PLI, FIR) gets the track's frames again from the
    /// latest keyframe on ([`DirectTrack::replay_from_keyframe`]). This starts a browser that
    /// dropped the opening keyframe (it came in before the browser had set up its receiving
    /// stream), and one whose picture broke on a frame that could not be repaired, at once
    /// instead of at the next keyframe seconds later.
    pub(super) fn on_keyframe_request(self: &Arc<Self>, ssrc: u32) {
        let Some(track) = self.track_of(ssrc) else {
            return;
        };
        let packets = track.replay_from_keyframe(Instant::now());
        self.send_again(track, packets);
    }

    pub(super) fn on_nack(self: &Arc<Self>, nack: &TransportLayerNack) {
        let Some(track) = self.track_of(nack.media_ssrc) else {
            return;
        };
        let lost: Vec<u16> = nack.nacks.iter().flat_map(|pair| pair.packet_list()).collect();
        // A receiver asks again before an answer could have come (it may not know the round
        // trip; a queue may have lengthened it): a packet sent again within the round trip is not
        // sent again yet, nor one sent again MAX_RESENDS times.
        let now = Instant::now();
        let round_trip = self
            .rtt_ms
            .lock()
            .expect("not poisoned")
            .map_or(MIN_RESEND_INTERVAL, |ms| Duration::from_secs_f64(ms / 1000.0))
            .clamp(MIN_RESEND_INTERVAL, MAX_RESEND_INTERVAL);
        let packets: Vec<SentPacket> = {
            let mut state = track.state.lock().expect("not poisoned");
            let due: Vec<usize> = lost
                .iter()
                .filter_map(|sequence| state.history.iter().position(|sent| sent.sequence == *sequence))
                .filter(|at| {
                    let sent = &state.history[*at];
                    sent.resends < MAX_RESENDS && sent.resent_at.is_none_or(|at| now.duration_since(at) >= round_trip)
                })
                .collect();
            if due.is_empty() {
                return;
            }
            let (copies, allowed) = {
                let mut budget = self.repair_budget.lock().expect("not poisoned");
                let copies = budget.copies();
                (copies, budget.take(now, due.len() * copies * RTP_MTU))
            };
            tracing::debug!(asked = ?lost, due = due.len(), copies, allowed, "NACK");
            if !allowed {
                return;
            }
            let mut packets = Vec::with_capacity(due.len() * copies);
            for at in &due {
                state.history[*at].resent_at = Some(now);
                state.history[*at].resends += 1;
            }
            // Each round of copies after the whole previous one, not each copy beside its twin.
            for _ in 0..copies {
                for at in &due {
                    let mut sent = state.history[*at].clone();
                    if track.rtx.is_some() {
                        sent.rtx_sequence = Some(state.next_rtx_sequence);
                        state.next_rtx_sequence = state.next_rtx_sequence.wrapping_add(1);
                    }
                    packets.push(sent);
                }
            }
            packets
        };
        self.send_again(track, packets);
    }

    /// Sends packets of `track` again (a NACK's, a keyframe request's) from a task of its own, so
    /// the reader that took the request goes on at once.
    pub(super) fn send_again(self: &Arc<Self>, track: Arc<DirectTrack>, packets: Vec<SentPacket>) {
        if packets.is_empty() {
            return;
        }
        self.retransmitted.fetch_add(packets.len() as u64, Ordering::Relaxed);
        let path = self.clone();
        tokio::spawn(async move {
            if let Err(error) = path.send_packets(&track, &packets, Instant::now()).await {
                tracing::debug!(%error, "packets not sent again");
            }
        });
    }

    /// Sets the repair budget from the media's rate since the last tick.
    fn follow_media_rate(&self, now: Instant) {
        let octets: u64 = self
            .tracks()
            .iter()
            .map(|track| u64::from(track.state.lock().expect("not poisoned").octets))
            .sum();
        let mut last = self.octets_at_tick.lock().expect("not poisoned");
        if let Some((before, at)) = *last {
            let seconds = now.duration_since(at).as_secs_f64();
            // Octet counts are 32-bit and wrap: a count that went down is skipped.
            if seconds > 0.0 && octets >= before {
                let rate = (octets - before) as f64 / seconds;
                self.repair_budget.lock().expect("not poisoned").follow_media(rate);
            }
        }
        *last = Some((octets, now));
    }
}

pub(super) fn ntp_now() -> u64 {
    let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}
