//! The direct media path. The webrtc-rs stack negotiates a connection (ICE, DTLS, SDP) and keeps
//! answering for it (consent checks, DTLS, closing), but the media of a connection
//! whose pair is a plain UDP socket of ours does not go through it: each frame is cut into RTP
//! payloads once, for all its viewers ([`Frame::packets`]), and per viewer only the RTP header is
//! stamped, the packet protected with the connection's own SRTP context and the frame's packets
//! sent in one GSO system call. The stack's path costs a driver turn, a channel hop and the whole
//! interceptor chain per packet per viewer; this one costs a header, a cipher pass and a share of
//! one system call.
//!
//! What the interceptors did for the media is done here, from the RTCP the socket receives (a
//! reader of the path's own takes the socket over from the stack's driver, and passes on STUN and
//! DTLS alone):
//! transport-wide sequence numbers and GCC over TWCC feedback (the bandwidth estimate), NACKs
//! answered from a record of what was sent, sender reports (so a receiver can put audio and video
//! on one clock) and what receiver reports say of loss, jitter and round trip. Bandwidth probes
//! (`probe.rs`) show whether the path carries a higher rendition before `auto` steps up to it.

mod congestion;
mod loss_window;
mod opener;
mod packetize;
mod probe;
mod repair_budget;
mod rtcp;
mod socket_tap;
mod srtp_export;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures::task::AtomicWaker;
use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, convert_twcc};
use rtc::peer_connection::srtp_export::{ExportedSrtp, set_srtp_export_hook};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp::packetizer::Payloader;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::context::Context as SrtpContext;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, TokioRuntime,
    Transmit,
};

use super::transport_history::TransportHistory;
use crate::media::{Codec, Frame};

/// The RTP packet size the payloads are cut for (before header extensions and the SRTP tag), as
/// the stack's own packetizer does.
const RTP_MTU: usize = 1200;
const RTP_HEADER: usize = 12;
/// What one GSO send may carry: a UDP datagram's limit, which the segments together are held to.
const MAX_GSO_BYTES: usize = 65_000;
/// Packets of a track kept for answering NACKs; they hold the frames, not copies.
const NACK_HISTORY: usize = 512;
/// A track answers a keyframe request at most this often.
const KEYFRAME_RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// The most a keyframe request is answered with: the frames from the latest keyframe on while
/// they stay within both bounds (a GOP of a few seconds does), the keyframe alone past them.
const MAX_REPLAY_FRAMES: usize = 300;
const MAX_REPLAY_BYTES: usize = 2 << 20;
/// How often sender reports go out, and the estimator's timers run.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Exported contexts nobody claimed are dropped after this long.
const EXPORT_LIFETIME: Duration = Duration::from_secs(60);
/// The range GCC's estimate moves in, in bits per second.
const MIN_BITRATE_BPS: f64 = 100_000.0;
const MAX_BITRATE_BPS: f64 = 50_000_000.0;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

use congestion::Congestion;
pub(crate) use congestion::{Carrier, EstimateOut, new_gcc};
pub(crate) use opener::DirectOpener;
use socket_tap::*;
pub(crate) use socket_tap::{TapRuntime, TappedSocket};
use srtp_export::claim_exported;
pub(crate) use srtp_export::{export_srtp_contexts, sdp_fingerprints};

/// What receiver reports said of one track.
#[derive(Clone, Copy, Debug, Default)]
struct Reception {
    loss: loss_window::LossWindow,
    jitter_ms: f64,
}

/// What the direct path tells of a connection, for its stats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct DirectStats {
    pub packets_sent: u64,
    pub retransmitted: u64,
    pub frames_replayed: u64,
    pub probe_packets: u64,
    pub probed_bps: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub rtcp_fraction_lost: Option<f64>,
}

/// One sent packet, as much as it takes to send it again.
#[derive(Clone)]
struct SentPacket {
    sequence: u16,
    timestamp: u32,
    frame: Arc<Frame>,
    chunk: usize,
    picture_id: u16,
    /// When it last went again on a NACK, and how many times it has (in the record).
    resent_at: Option<Instant>,
    resends: u8,
    /// Sent again over RTX (RFC 4588) with this sequence number of the repair stream.
    rtx_sequence: Option<u16>,
}

/// A track's repair stream (RFC 4588), where the receiver negotiated one: its own SSRC and
/// payload type, and sequence numbers of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rtx {
    pub ssrc: u32,
    pub payload_type: u8,
}

struct TrackState {
    next_sequence: u16,
    next_rtx_sequence: u16,
    timestamp_offset: u32,
    /// VP8/VP9 picture id of the next frame.
    next_picture_id: u16,
    packets: u32,
    octets: u32,
    /// The RTP timestamp of the last frame sent, and when it went.
    last: Option<(u32, Instant)>,
    history: VecDeque<SentPacket>,
    reception: Option<Reception>,
    /// When a keyframe request was last answered.
    keyframe_resent: Option<Instant>,
    /// The video frames sent since the latest keyframe, it first.
    since_keyframe: SinceKeyframe,
    /// Frames sent again in answer to keyframe requests.
    frames_replayed: u64,
}

/// The frames from a track's latest keyframe on, which a receiver whose picture broke needs again
/// (see [`DirectTrack::replay_from_keyframe`]); past [`MAX_REPLAY_FRAMES`] or
/// [`MAX_REPLAY_BYTES`] only the keyframe is kept.
#[derive(Default)]
struct SinceKeyframe {
    frames: Vec<Arc<Frame>>,
    bytes: usize,
    whole: bool,
}

impl SinceKeyframe {
    fn follow(&mut self, frame: &Arc<Frame>) {
        if frame.keyframe {
            self.frames.clear();
            self.bytes = 0;
            self.whole = true;
        } else if !self.whole {
            return;
        }
        if self.frames.len() >= MAX_REPLAY_FRAMES || self.bytes + frame.data.len() > MAX_REPLAY_BYTES {
            self.frames.truncate(1);
            self.whole = false;
            return;
        }
        self.bytes += frame.data.len();
        self.frames.push(frame.clone());
    }
}

impl TrackState {
    /// Gives a frame of `chunks` payloads at `timestamp` the track's next picture id and
    /// sequence numbers, and adds its packets to `out`.
    fn number_frame(&mut self, frame: &Arc<Frame>, chunks: usize, timestamp: u32, out: &mut Vec<SentPacket>) {
        let picture_id = self.next_picture_id;
        self.next_picture_id = (picture_id + 1) & 0x7fff;
        let first_sequence = self.next_sequence;
        self.next_sequence = first_sequence.wrapping_add(chunks as u16);
        out.extend((0..chunks).map(|chunk| SentPacket {
            sequence: first_sequence.wrapping_add(chunk as u16),
            timestamp,
            frame: frame.clone(),
            chunk,
            picture_id,
            resent_at: None,
            resends: 0,
            rtx_sequence: None,
        }));
    }

    /// Keeps `packets` for NACKs, the oldest going past [`NACK_HISTORY`].
    fn record(&mut self, packets: &[SentPacket]) {
        let overflow = (self.history.len() + packets.len()).saturating_sub(NACK_HISTORY);
        self.history.drain(..overflow.min(self.history.len()));
        self.history.extend(packets.iter().cloned());
    }
}

/// A track sent on the direct path.
pub(crate) struct DirectTrack {
    /// Weak: the path keeps its tracks (their counters and NACK record outlive their forwarders),
    /// and goes with its connection.
    path: Weak<DirectPath>,
    codec: Codec,
    ssrc: u32,
    payload_type: u8,
    rtx: Option<Rtx>,
    clock_rate: u32,
    state: Mutex<TrackState>,
}

/// A connection's media path around the stack (see the module's text).
pub(crate) struct DirectPath {
    socket: Arc<TappedSocket>,
    destination: SocketAddr,
    gso_segments: usize,
    srtp: Mutex<SrtpContext>,
    /// Opens the RTCP the remote sends.
    remote: Mutex<SrtpContext>,
    transport_cc: Option<u8>,
    congestion: Mutex<Congestion>,
    estimate: EstimateOut,
    tracks: Mutex<Vec<Arc<DirectTrack>>>,
    /// Middle 32 bits of the NTP time of each recent sender report, and when it went.
    reports_sent: Mutex<VecDeque<(u32, Instant)>>,
    rtt_ms: Mutex<Option<f64>>,
    retransmitted: AtomicU64,
    repair_budget: Mutex<repair_budget::RepairBudget>,
    probing: Mutex<probe::Probing>,
    /// Media octets of all tracks at the last report tick, for the media's rate.
    octets_at_tick: Mutex<Option<(u64, Instant)>>,
    /// The report task and the socket's reader, which go with the path.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl DirectPath {
    /// The direct path of a connection: `runtime` wrapped its sockets, `fingerprints` are its
    /// certificate's (from its local description) and `pair` its selected candidate pair (local
    /// and remote address) when that is a UDP pair on one of its own sockets; a relayed or TCP
    /// pair goes through the stack. `transport_cc` is the negotiated id of the transport-wide
    /// sequence number extension.
    pub fn open(
        runtime: &TapRuntime,
        fingerprints: &[String],
        pair: (SocketAddr, SocketAddr),
        transport_cc: Option<u8>,
        estimate: EstimateOut,
        initial_bitrate_bps: f64,
    ) -> Option<Arc<Self>> {
        let (local, destination) = pair;
        let socket = runtime
            .sockets()
            .into_iter()
            .find(|socket| socket.local_addr().is_ok_and(|bound| bound.port() == local.port()))?;
        let exported = fingerprints
            .iter()
            .find_map(|fingerprint| claim_exported(fingerprint))?;
        estimate.hand_to(Carrier::Direct);
        let gcc = new_gcc(initial_bitrate_bps);
        estimate.publish(Carrier::Direct, &gcc);
        let path = Arc::new(Self {
            gso_segments: socket.max_gso_segments().clamp(1, 64),
            socket,
            destination,
            srtp: Mutex::new(exported.local),
            remote: Mutex::new(exported.remote),
            transport_cc,
            congestion: Mutex::new(Congestion {
                history: TransportHistory::starting_at(rand::random()),
                gcc,
            }),
            estimate,
            tracks: Mutex::new(Vec::new()),
            reports_sent: Mutex::new(VecDeque::new()),
            rtt_ms: Mutex::new(None),
            retransmitted: AtomicU64::new(0),
            repair_budget: Mutex::new(repair_budget::RepairBudget::new(Instant::now())),
            probing: Mutex::new(probe::Probing::default()),
            // From the start, so the first tick gives the media's rate (the repair budget's).
            octets_at_tick: Mutex::new(Some((0, Instant::now()))),
            tasks: Mutex::new(Vec::new()),
        });
        let claim = path.socket.claim_for_path()?;
        let weak = Arc::downgrade(&path);
        let reader = tokio::spawn(read_for_path(claim, weak.clone()));
        let reports = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REPORT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(path) = weak.upgrade() else { return };
                path.on_tick().await;
            }
        });
        path.tasks.lock().expect("not poisoned").extend([reports, reader]);
        Some(path)
    }

    /// A track to send frames of `codec` on, as `ssrc` with `payload_type`, packets asked for
    /// again going over `rtx` where the receiver negotiated it.
    pub fn track(self: &Arc<Self>, codec: Codec, ssrc: u32, payload_type: u8, rtx: Option<Rtx>) -> Arc<DirectTrack> {
        let track = Arc::new(DirectTrack {
            path: Arc::downgrade(self),
            codec,
            ssrc,
            payload_type,
            rtx,
            clock_rate: codec.clock_rate(),
            state: Mutex::new(TrackState {
                next_sequence: rand::random(),
                next_rtx_sequence: rand::random(),
                timestamp_offset: rand::random(),
                next_picture_id: rand::random::<u16>() & 0x7fff,
                packets: 0,
                octets: 0,
                last: None,
                history: VecDeque::with_capacity(NACK_HISTORY),
                reception: None,
                keyframe_resent: None,
                since_keyframe: SinceKeyframe::default(),
                frames_replayed: 0,
            }),
        });
        self.tracks.lock().expect("not poisoned").push(track.clone());
        track
    }

    fn tracks(&self) -> Vec<Arc<DirectTrack>> {
        self.tracks.lock().expect("not poisoned").clone()
    }

    pub fn stats(&self) -> DirectStats {
        let probe_packets = self.probing.lock().expect("not poisoned").sent;
        let mut stats = DirectStats {
            retransmitted: self.retransmitted.load(Ordering::Relaxed),
            rtt_ms: *self.rtt_ms.lock().expect("not poisoned"),
            probe_packets,
            probed_bps: self.probed_bps(),
            ..Default::default()
        };
        for track in self.tracks() {
            let state = track.state.lock().expect("not poisoned");
            stats.packets_sent += u64::from(state.packets);
            stats.frames_replayed += state.frames_replayed;
            if let Some(reception) = state.reception {
                stats.remote_jitter_ms = Some(stats.remote_jitter_ms.unwrap_or(0.0).max(reception.jitter_ms));
                stats.rtcp_fraction_lost = Some(
                    stats
                        .rtcp_fraction_lost
                        .unwrap_or(0.0)
                        .max(reception.loss.fraction_lost().unwrap_or(0.0)),
                );
            }
        }
        stats
    }

    /// Stops sending reports and gives the socket back to the stack.
    pub fn stop(&self) {
        for task in self.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }

    /// Protects and sends packets of `track`, stamped with transport-wide sequence numbers when
    /// those were negotiated, at `departure`.
    async fn send_packets(&self, track: &DirectTrack, packets: &[SentPacket], departure: Instant) -> io::Result<()> {
        let (datagrams, _) = self.protect(track, packets, departure)?;
        self.send_datagrams(&datagrams).await
    }

    /// The packets of `track` protected, and the transport-wide sequence number each was stamped
    /// with (recorded as leaving at `departure`), when those were negotiated.
    fn protect(
        &self,
        track: &DirectTrack,
        packets: &[SentPacket],
        departure: Instant,
    ) -> io::Result<(Vec<BytesMut>, Vec<Option<u16>>)> {
        let mut datagrams = Vec::with_capacity(packets.len());
        let mut sequences = Vec::with_capacity(packets.len());
        let mut srtp = self.srtp.lock().expect("not poisoned");
        let mut congestion = self.transport_cc.map(|_| self.congestion.lock().expect("not poisoned"));
        for sent in packets {
            let transport_sequence = congestion.as_ref().map(|congestion| congestion.history.next_sequence());
            let (header, plain) = track.build(sent, self.transport_cc.zip(transport_sequence));
            let protected = srtp
                .encrypt_rtp_with_header(&plain, &header)
                .map_err(io::Error::other)?;
            if let Some(congestion) = congestion.as_mut() {
                congestion
                    .history
                    .record(header.ssrc, header.sequence_number, protected.len(), departure);
            }
            datagrams.push(protected);
            sequences.push(transport_sequence);
        }
        Ok((datagrams, sequences))
    }

    /// Sends datagrams in order, runs of equal size (the last of a run may be shorter) in one
    /// GSO system call each.
    async fn send_datagrams(&self, datagrams: &[BytesMut]) -> io::Result<()> {
        let mut start = 0;
        let mut batch = Vec::new();
        while start < datagrams.len() {
            let segment = datagrams[start].len();
            let mut end = start + 1;
            let mut bytes = segment;
            while end < datagrams.len()
                && end - start < self.gso_segments
                && bytes + datagrams[end].len() <= MAX_GSO_BYTES
                && datagrams[end - 1].len() == segment
                && datagrams[end].len() <= segment
            {
                bytes += datagrams[end].len();
                end += 1;
            }
            let contents: &[u8] = if end - start == 1 {
                &datagrams[start]
            } else {
                batch.clear();
                for datagram in &datagrams[start..end] {
                    batch.extend_from_slice(datagram);
                }
                &batch
            };
            let transmit = Transmit {
                destination: self.destination,
                ecn: None,
                contents,
                segment_size: (end - start > 1).then_some(segment),
                src_ip: None,
            };
            futures::future::poll_fn(|cx| self.socket.poll_send(cx, &transmit)).await?;
            start = end;
        }
        Ok(())
    }

    async fn send_rtcp(&self, packet: &dyn Marshal) -> io::Result<()> {
        let plain = packet.marshal().map_err(io::Error::other)?;
        let protected = self
            .srtp
            .lock()
            .expect("not poisoned")
            .encrypt_rtcp(&plain)
            .map_err(io::Error::other)?;
        self.send_datagrams(&[protected]).await
    }
}

impl Drop for DirectPath {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for DirectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectPath")
            .field("destination", &self.destination)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::packetize::{cut, put_payload};
    use super::rtcp::ntp_now;
    use super::*;

    #[test]
    fn rtcp_is_told_from_rtp_dtls_and_stun() {
        // A receiver report (PT 201), an RTP packet (PT 96), a DTLS record, a STUN request.
        assert!(is_rtcp(&[0x81, 201, 0, 7, 1, 2, 3, 4]));
        assert!(!is_rtcp(&[0x80, 96, 0, 7, 1, 2, 3, 4]));
        assert!(!is_rtcp(&[22, 254, 253, 0, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42]));
    }

    #[test]
    fn loss_takes_one_in_every_rtp_datagram_and_nothing_else() {
        let loss = InboundLoss {
            every: 3,
            seen: Default::default(),
        };
        let rtp = [0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa];
        let rtcp = [0x81, 201, 0, 7, 1, 2, 3, 4];
        let dropped: Vec<bool> = (0..6).map(|_| loss.drops(&rtp)).collect();
        assert_eq!(dropped, [false, false, true, false, false, true]);
        assert!(!loss.drops(&rtcp));
    }

    #[test]
    fn a_vp8_payload_gets_the_viewers_picture_id() {
        let mut out = BytesMut::new();
        put_payload(Codec::Vp8, &[0x10, 0xaa, 0xbb], 0x1234, &mut out);
        assert_eq!(&out[..], &[0x90, 0x80, 0x92, 0x34, 0xaa, 0xbb]);
    }

    #[test]
    fn a_vp9_payload_has_its_picture_id_replaced() {
        let cut = cut(Codec::Vp9, &Bytes::from_static(&[0u8; 10]));
        let mut out = BytesMut::new();
        put_payload(Codec::Vp9, &cut[0], 0x0102, &mut out);
        assert_eq!(out.len(), cut[0].len());
        assert_eq!(out[0], cut[0][0]);
        assert_eq!(&out[1..3], &[0x81, 0x02]);
        assert_eq!(&out[3..], &cut[0][3..]);
    }

    #[test]
    fn what_a_keyframe_request_is_answered_with_starts_at_the_latest_keyframe_within_its_bounds() {
        let frame = |keyframe: bool, size: usize| {
            Arc::new(Frame {
                track: 0,
                timestamp: Duration::ZERO,
                duration: Duration::from_millis(33),
                keyframe,
                data: Bytes::from(vec![0u8; size]),
                packets: Default::default(),
            })
        };
        let mut since = SinceKeyframe::default();
        since.follow(&frame(false, 10));
        assert!(since.frames.is_empty(), "nothing before the first keyframe");
        since.follow(&frame(true, 100));
        since.follow(&frame(false, 10));
        since.follow(&frame(false, 10));
        assert_eq!(
            since.frames.iter().map(|f| f.data.len()).collect::<Vec<_>>(),
            [100, 10, 10]
        );
        assert!(since.whole);

        // Past the bytes bound only the keyframe stays, until the next one.
        since.follow(&frame(false, MAX_REPLAY_BYTES));
        assert_eq!(since.frames.len(), 1);
        assert!(since.frames[0].keyframe && !since.whole);
        since.follow(&frame(false, 10));
        assert_eq!(since.frames.len(), 1);
        since.follow(&frame(true, 50));
        assert!(since.whole);
        for _ in 1..MAX_REPLAY_FRAMES {
            since.follow(&frame(false, 1));
        }
        assert_eq!(since.frames.len(), MAX_REPLAY_FRAMES);
        since.follow(&frame(false, 1));
        assert_eq!(since.frames.len(), 1, "past the frames bound");
        assert_eq!(since.frames[0].data.len(), 50);
    }

    #[test]
    fn ntp_time_counts_from_1900() {
        let seconds = ntp_now() >> 32;
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(seconds.abs_diff(unix + NTP_UNIX_OFFSET) <= 1);
    }
}
