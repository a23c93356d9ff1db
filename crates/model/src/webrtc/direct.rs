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
//! on one clock) and what receiver reports say of loss, jitter and round trip.

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
/// A track sends its latest keyframe again on a keyframe request at most this often.
const KEYFRAME_RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// How often sender reports go out, and the estimator's timers run.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Exported contexts nobody claimed are dropped after this long.
const EXPORT_LIFETIME: Duration = Duration::from_secs(60);
/// The range GCC's estimate moves in, in bits per second.
const MIN_BITRATE_BPS: f64 = 100_000.0;
const MAX_BITRATE_BPS: f64 = 50_000_000.0;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The SRTP contexts of completed handshakes, until their connection claims them.
static EXPORTED: Mutex<Vec<(Instant, ExportedSrtp)>> = Mutex::new(Vec::new());

/// Has the stack hand over its SRTP contexts from now on (once per process): what the direct
/// path of any later connection needs.
pub(crate) fn export_srtp_contexts() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        set_srtp_export_hook(Box::new(|exported| {
            let mut all = EXPORTED.lock().expect("not poisoned");
            all.retain(|(at, _)| at.elapsed() < EXPORT_LIFETIME);
            all.push((Instant::now(), exported));
        }));
    });
}

/// The contexts exported for the connection whose certificate has `fingerprint` (as its local
/// description gives it).
fn claim_exported(fingerprint: &str) -> Option<ExportedSrtp> {
    let mut all = EXPORTED.lock().expect("not poisoned");
    let index = all.iter().position(|(_, exported)| {
        exported
            .local_fingerprints
            .iter()
            .any(|own| own.eq_ignore_ascii_case(fingerprint))
    })?;
    Some(all.swap_remove(index).1)
}

/// The SHA-256 certificate fingerprints an SDP announces.
pub(crate) fn sdp_fingerprints(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a=fingerprint:"))
        .filter_map(|value| value.split_once(' '))
        .filter(|(algorithm, _)| algorithm.eq_ignore_ascii_case("sha-256"))
        .map(|(_, fingerprint)| fingerprint.trim().to_owned())
        .collect()
}

/// Whether a datagram is RTCP (RFC 5761: RTP and RTCP on one port are told apart by the
/// second byte; DTLS and STUN do not start with version 2).
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// Whether a datagram is RTP media (version 2, not RTCP).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !is_rtcp(datagram)
}

/// Drops one in `every` RTP datagram received: loss on demand, for the receivers of tests and
/// simulations.
#[derive(Debug)]
struct InboundLoss {
    every: u32,
    seen: std::sync::atomic::AtomicU32,
}

impl InboundLoss {
    fn drops(&self, datagram: &[u8]) -> bool {
        is_rtp(datagram) && (self.seen.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }
}

/// A UDP socket of the stack's whose RTCP goes to the direct path once there is one (and which may
/// lose media on purpose).
#[derive(Debug)]
pub(crate) struct TappedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    loss: Option<Arc<InboundLoss>>,
    /// Who reads the socket once a direct path has claimed it (see [`read_for_path`]).
    reader: ReaderHandoff,
}

/// The hand-over of a socket between the stack's driver and the direct path's reader. Every RTCP
/// datagram (a dozen a second per viewer) used to wake the connection's whole driver; the reader
/// handles it alone and passes on only what the stack answers for (STUN, DTLS).
#[derive(Debug, Default)]
struct ReaderHandoff {
    /// A direct path claimed the socket.
    requested: AtomicBool,
    /// The reader has the socket: the driver takes what it needs from `for_stack` only. Set by the
    /// driver itself, so that once it is set the driver never polls the socket again and its
    /// waker cannot take the socket's readiness from the reader.
    reading: AtomicBool,
    for_stack: Mutex<VecDeque<(Vec<u8>, RecvMeta)>>,
    driver: AtomicWaker,
    path_reader: AtomicWaker,
}

/// Datagrams for the stack kept while its driver is busy; STUN and DTLS retransmit what is lost.
const FOR_STACK_QUEUE: usize = 64;

impl TappedSocket {
    /// What the direct path's reader received for the stack, one datagram at a time.
    fn take_for_stack(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let Some((datagram, received)) = self.reader.for_stack.lock().expect("not poisoned").pop_front() else {
            return Poll::Pending;
        };
        let length = datagram.len().min(buf.len());
        buf[..length].copy_from_slice(&datagram[..length]);
        *slot = received;
        slot.len = length;
        slot.stride = length;
        Poll::Ready(Ok(1))
    }

    /// Claims the socket for a direct path's reader, which has it from the driver's next poll
    /// on; `None` if another path has it. The claim ends when the returned guard is dropped.
    fn claim_for_path(self: &Arc<Self>) -> Option<HandBack> {
        if self.reader.requested.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.reader.driver.wake();
        Some(HandBack(self.clone()))
    }

    /// One received message (several datagrams when GRO coalesced them): RTCP to `path`, the
    /// rest queued for the stack, whose driver is woken for it.
    fn deliver(&self, path: &Arc<DirectPath>, message: &[u8], received: RecvMeta) {
        let mut for_stack = false;
        for datagram in message.chunks(received.stride.max(1)) {
            if is_rtcp(datagram) {
                path.on_rtcp(datagram);
            } else if !self.loss.as_ref().is_some_and(|loss| loss.drops(datagram)) {
                let mut queue = self.reader.for_stack.lock().expect("not poisoned");
                if queue.len() < FOR_STACK_QUEUE {
                    queue.push_back((datagram.to_vec(), received));
                    for_stack = true;
                }
            }
        }
        if for_stack {
            self.reader.driver.wake();
        }
    }

    /// Receives one datagram at a time, dropping those the loss takes.
    fn poll_recv_lossy(
        &self,
        loss: &InboundLoss,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let received = self.inner.poll_recv(cx, &mut bufs[..1], &mut meta[..1]);
            if let Poll::Ready(Ok(1)) = received {
                let single = meta[0].len <= meta[0].stride;
                if single && loss.drops(&bufs[0][..meta[0].len]) {
                    continue;
                }
            }
            return received;
        }
    }
}

thread_local! {
    /// The receive buffer of the readers running on a thread (a reader never holds it across an
    /// await): large enough for a GRO batch, and one per thread rather than per connection.
    static RECEIVED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 65_536]);
}

/// Datagrams a reader takes before letting other tasks run.
const READER_BUDGET: usize = 64;

/// A claim on a socket for a direct path's reader: dropping it gives the socket back to the driver.
struct HandBack(Arc<TappedSocket>);

impl Drop for HandBack {
    fn drop(&mut self) {
        let handoff = &self.0.reader;
        handoff.requested.store(false, Ordering::Release);
        handoff.reading.store(false, Ordering::Release);
        handoff.driver.wake();
    }
}

/// Reads the claimed socket for its direct path once the driver has handed it over: RTCP goes to
/// the path there and then, anything else (STUN, DTLS) to the stack's driver, which is woken only
/// for that. The socket goes back to the driver when the reader ends (the claim is held by the
/// task, so even one aborted before it ran gives it back): when the path goes (its task is
/// aborted) or the socket fails (the driver then meets the error itself).
async fn read_for_path(claim: HandBack, path: Weak<DirectPath>) {
    let socket = &claim.0;
    futures::future::poll_fn(|cx| {
        let handoff = &socket.reader;
        handoff.path_reader.register(cx.waker());
        if !handoff.reading.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        RECEIVED.with_borrow_mut(|buffer| {
            for _ in 0..READER_BUDGET {
                let mut meta = [RecvMeta::default()];
                match socket.inner.poll_recv(cx, &mut [IoSliceMut::new(buffer)], &mut meta) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) if is_retryable(&error) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(0)) => continue,
                    Poll::Ready(Ok(_)) => {
                        let Some(path) = path.upgrade() else {
                            return Poll::Ready(());
                        };
                        let [received] = meta;
                        socket.deliver(&path, &buffer[..received.len], received);
                    }
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    })
    .await;
}

/// Receive errors that leave the socket usable (as the stack's driver counts them).
fn is_retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::TimedOut
    )
}

impl AsyncUdpSocket for TappedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let handoff = &self.reader;
        // The driver also probes with a waker that wakes nobody: that one is not kept.
        if !cx.waker().will_wake(std::task::Waker::noop()) {
            handoff.driver.register(cx.waker());
        }
        if handoff.requested.load(Ordering::Acquire) && !handoff.reading.swap(true, Ordering::AcqRel) {
            handoff.path_reader.wake();
        }
        if handoff.reading.load(Ordering::Acquire) {
            return self.take_for_stack(bufs, meta);
        }
        match &self.loss {
            Some(loss) if !bufs.is_empty() && !meta.is_empty() => self.poll_recv_lossy(loss, cx, bufs, meta),
            _ => self.inner.poll_recv(cx, bufs, meta),
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

/// Tokio, as the stack uses it, except that the UDP sockets it wraps are tapped and kept: one
/// per peer connection, so the sockets are that connection's.
#[derive(Debug)]
pub(crate) struct TapRuntime {
    tokio: TokioRuntime,
    sockets: Mutex<Vec<Arc<TappedSocket>>>,
    loss: Option<Arc<InboundLoss>>,
}

impl Default for TapRuntime {
    fn default() -> Self {
        Self {
            tokio: TokioRuntime,
            sockets: Mutex::new(Vec::new()),
            loss: None,
        }
    }
}

impl TapRuntime {
    /// A runtime whose sockets drop one in `every` RTP datagram they receive.
    pub fn losing_one_in(every: u32) -> Self {
        Self {
            loss: Some(Arc::new(InboundLoss {
                every: every.max(2),
                seen: Default::default(),
            })),
            ..Self::default()
        }
    }

    fn sockets(&self) -> Vec<Arc<TappedSocket>> {
        self.sockets.lock().expect("not poisoned").clone()
    }
}

impl Runtime for TapRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let tapped = Arc::new(TappedSocket {
            inner: self.tokio.wrap_udp_socket(socket)?,
            loss: self.loss.clone(),
            reader: ReaderHandoff::default(),
        });
        let mut sockets = self.sockets.lock().expect("not poisoned");
        // An ICE restart rebinds: the sockets of before are the stack's no more.
        sockets.retain(|socket| Arc::strong_count(socket) > 1);
        sockets.push(tapped.clone());
        Ok(tapped)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.tokio.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.tokio.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.tokio.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.tokio.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.tokio.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (tapped)"
    }
}

/// GCC starting at `initial_bitrate_bps`, within the range an estimate may take.
pub(crate) fn new_gcc(initial_bitrate_bps: f64) -> Gcc {
    Gcc::new(initial_bitrate_bps, MIN_BITRATE_BPS, MAX_BITRATE_BPS)
}

/// Where the bandwidth estimate of a peer is published, by the stack's congestion controller or
/// by the direct path's, whichever carries the media.
#[derive(Clone)]
pub(crate) struct EstimateOut {
    pub target: Arc<AtomicU64>,
    pub stats: Arc<Mutex<EstimatorStats>>,
    /// Set when the direct path takes over: the stack's controller, which sees no media any
    /// more, stops publishing.
    pub stack_silenced: Arc<AtomicBool>,
}

impl EstimateOut {
    pub fn publish(&self, gcc: &Gcc) {
        self.target.store(gcc.target_bitrate().to_bits(), Ordering::Relaxed);
        *self.stats.lock().expect("not poisoned") = gcc.stats();
    }
}

/// What receiver reports said of one track.
#[derive(Clone, Copy, Debug, Default)]
struct Reception {
    fraction_lost: f64,
    jitter_ms: f64,
}

/// What the direct path tells of a connection, for its stats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct DirectStats {
    pub packets_sent: u64,
    pub retransmitted: u64,
    pub rtt_ms: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub rtcp_fraction_lost: Option<f64>,
}

/// The record of what was sent that GCC matches feedback against, and GCC.
struct Congestion {
    history: TransportHistory,
    gcc: Gcc,
}

/// One sent packet, as much as it takes to send it again.
#[derive(Clone)]
struct SentPacket {
    sequence: u16,
    timestamp: u32,
    frame: Arc<Frame>,
    chunk: usize,
    picture_id: u16,
}

struct TrackState {
    next_sequence: u16,
    timestamp_offset: u32,
    /// VP8/VP9 picture id of the next frame.
    next_picture_id: u16,
    packets: u32,
    octets: u32,
    /// The RTP timestamp of the last frame sent, and when it went.
    last: Option<(u32, Instant)>,
    history: VecDeque<SentPacket>,
    reception: Option<Reception>,
    /// When the latest keyframe last went again on a keyframe request.
    keyframe_resent: Option<Instant>,
}

impl TrackState {
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
        estimate.stack_silenced.store(true, Ordering::Relaxed);
        let gcc = new_gcc(initial_bitrate_bps);
        estimate.publish(&gcc);
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

    /// A track to send frames of `codec` on, as `ssrc` with `payload_type`.
    pub fn track(self: &Arc<Self>, codec: Codec, ssrc: u32, payload_type: u8) -> Arc<DirectTrack> {
        let track = Arc::new(DirectTrack {
            path: Arc::downgrade(self),
            codec,
            ssrc,
            payload_type,
            clock_rate: codec.clock_rate(),
            state: Mutex::new(TrackState {
                next_sequence: rand::random(),
                timestamp_offset: rand::random(),
                next_picture_id: rand::random::<u16>() & 0x7fff,
                packets: 0,
                octets: 0,
                last: None,
                history: VecDeque::with_capacity(NACK_HISTORY),
                reception: None,
                keyframe_resent: None,
            }),
        });
        self.tracks.lock().expect("not poisoned").push(track.clone());
        track
    }

    fn tracks(&self) -> Vec<Arc<DirectTrack>> {
        self.tracks.lock().expect("not poisoned").clone()
    }

    pub fn stats(&self) -> DirectStats {
        let mut stats = DirectStats {
            retransmitted: self.retransmitted.load(Ordering::Relaxed),
            rtt_ms: *self.rtt_ms.lock().expect("not poisoned"),
            ..Default::default()
        };
        for track in self.tracks() {
            let state = track.state.lock().expect("not poisoned");
            stats.packets_sent += u64::from(state.packets);
            if let Some(reception) = state.reception {
                stats.remote_jitter_ms = Some(stats.remote_jitter_ms.unwrap_or(0.0).max(reception.jitter_ms));
                stats.rtcp_fraction_lost = Some(stats.rtcp_fraction_lost.unwrap_or(0.0).max(reception.fraction_lost));
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
        let mut datagrams = Vec::with_capacity(packets.len());
        {
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
                        .record(track.ssrc, sent.sequence, protected.len(), departure);
                }
                datagrams.push(protected);
            }
        }
        self.send_datagrams(&datagrams).await
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

    /// Sender reports, and the estimator's own timers.
    async fn on_tick(&self) {
        let now = Instant::now();
        {
            let mut congestion = self.congestion.lock().expect("not poisoned");
            congestion.gcc.handle_timeout(now);
            self.estimate.publish(&congestion.gcc);
        }
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
    fn on_rtcp(self: &Arc<Self>, datagram: &[u8]) {
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

    fn track_of(&self, ssrc: u32) -> Option<Arc<DirectTrack>> {
        self.tracks().into_iter().find(|track| track.ssrc == ssrc)
    }

    fn on_transport_cc(&self, feedback: &TransportLayerCc, now: Instant) {
        let mut congestion = self.congestion.lock().expect("not poisoned");
        for acknowledgement in convert_twcc(feedback) {
            congestion.history.acknowledge(acknowledgement);
        }
        let reports = congestion.history.take_reports();
        if !reports.is_empty() {
            congestion.gcc.on_reports(now, &reports);
            self.estimate.publish(&congestion.gcc);
        }
    }

    fn on_receiver_report(&self, report: &ReceiverReport, now: Instant) {
        for block in &report.reports {
            let Some(track) = self.track_of(block.ssrc) else {
                continue;
            };
            track.state.lock().expect("not poisoned").reception = Some(Reception {
                fraction_lost: f64::from(block.fraction_lost) / 256.0,
                jitter_ms: f64::from(block.jitter) * 1000.0 / f64::from(track.clock_rate),
            });
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

    /// A receiver that asks for a keyframe (PLI, FIR) gets the track's latest one again, as
    /// packets of new sequence numbers with the frame's own timestamp and picture id: stored media
    /// has no encoder to ask for a new one, and the frames sent after it reference it. This is
    /// what starts a browser that dropped the opening keyframe (it came in before the browser had
    /// set up its receiving stream) at once, instead of at the next keyframe seconds later.
    fn on_keyframe_request(self: &Arc<Self>, ssrc: u32) {
        let Some(track) = self.track_of(ssrc) else {
            return;
        };
        let packets = track.again_latest_keyframe(Instant::now());
        self.send_again(track, packets);
    }

    fn on_nack(self: &Arc<Self>, nack: &TransportLayerNack) {
        let Some(track) = self.track_of(nack.media_ssrc) else {
            return;
        };
        let lost: Vec<u16> = nack.nacks.iter().flat_map(|pair| pair.packet_list()).collect();
        let packets: Vec<SentPacket> = {
            let state = track.state.lock().expect("not poisoned");
            lost.iter()
                .filter_map(|sequence| state.history.iter().find(|sent| sent.sequence == *sequence))
                .cloned()
                .collect()
        };
        self.send_again(track, packets);
    }

    /// Sends packets of `track` again (a NACK's, a keyframe request's) from a task of its own, so
    /// the reader that took the request goes on at once.
    fn send_again(self: &Arc<Self>, track: Arc<DirectTrack>, packets: Vec<SentPacket>) {
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
}

impl Drop for DirectPath {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ntp_now() -> u64 {
    let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// Cuts a frame into RTP payloads, the same for every viewer. VP8 and VP9 picture ids are each
/// viewer's own and are written per packet ([`DirectTrack::build`]), so VP8 is cut without one.
fn cut(codec: Codec, data: &Bytes) -> Vec<Bytes> {
    let mtu = RTP_MTU - RTP_HEADER;
    let payloads = match codec {
        Codec::H264 => rtc::rtp::codec::h264::H264Payloader::default().payload(mtu, data),
        Codec::Vp8 => rtc::rtp::codec::vp8::Vp8Payloader::default().payload(mtu - VP8_PICTURE_ID_BYTES, data),
        Codec::Vp9 => rtc::rtp::codec::vp9::Vp9Payloader::default().payload(mtu, data),
        Codec::Av1 => rtc::rtp::codec::av1::Av1Payloader::default().payload(mtu, data),
        Codec::Opus => rtc::rtp::codec::opus::OpusPayloader.payload(mtu, data),
    };
    payloads.unwrap_or_else(|error| {
        tracing::debug!(%error, codec = codec.name(), "frame not packetized");
        Vec::new()
    })
}

/// The extension bytes a VP8 payload descriptor takes for a 15-bit picture id.
const VP8_PICTURE_ID_BYTES: usize = 3;

/// Writes `payload`, with `picture_id` in its VP8 or VP9 payload descriptor, after `out`'s header.
fn put_payload(codec: Codec, payload: &[u8], picture_id: u16, out: &mut BytesMut) {
    let picture_id = picture_id | 0x8000;
    match codec {
        // RFC 7741: X set in the first byte, then an extension byte with I set and the M-form
        // (15-bit) picture id. The payloader wrote a descriptor of one byte.
        Codec::Vp8 if !payload.is_empty() => {
            out.put_u8(payload[0] | 0x80);
            out.put_u8(0x80);
            out.put_u16(picture_id);
            out.extend_from_slice(&payload[1..]);
        }
        // The payloader always writes I and an M-form picture id right after the first byte.
        Codec::Vp9 if payload.len() >= 3 && payload[0] & 0x80 != 0 => {
            out.put_u8(payload[0]);
            out.put_u16(picture_id);
            out.extend_from_slice(&payload[3..]);
        }
        _ => out.extend_from_slice(payload),
    }
}

impl DirectTrack {
    /// Sends one frame: its packets leave together. An error is this frame's alone (the socket
    /// refused it); the next may go.
    pub async fn send(&self, frame: &Arc<Frame>) -> io::Result<()> {
        let payloads = frame.packets.get_or_cut(|| cut(self.codec, &frame.data)).clone();
        if payloads.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let packets: Vec<SentPacket> = {
            let mut state = self.state.lock().expect("not poisoned");
            let timestamp = state
                .timestamp_offset
                .wrapping_add((frame.timestamp.as_secs_f64() * f64::from(self.clock_rate)).round() as u64 as u32);
            let picture_id = state.next_picture_id;
            state.next_picture_id = (picture_id + 1) & 0x7fff;
            let first_sequence = state.next_sequence;
            state.next_sequence = first_sequence.wrapping_add(payloads.len() as u16);
            state.packets = state.packets.wrapping_add(payloads.len() as u32);
            let octets: usize = payloads.iter().map(Bytes::len).sum();
            state.octets = state.octets.wrapping_add(octets as u32);
            state.last = Some((timestamp, now));
            let packets: Vec<SentPacket> = (0..payloads.len())
                .map(|chunk| SentPacket {
                    sequence: first_sequence.wrapping_add(chunk as u16),
                    timestamp,
                    frame: frame.clone(),
                    chunk,
                    picture_id,
                })
                .collect();
            state.record(&packets);
            packets
        };
        let path = self
            .path
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the connection is closed"))?;
        path.send_packets(self, &packets, now).await
    }

    /// The packets of the latest keyframe in the record, numbered anew (and recorded, so that a
    /// NACK can bring them back too); none when it is not all in the record, or when it went again
    /// less than [`KEYFRAME_RESEND_INTERVAL`] ago.
    fn again_latest_keyframe(&self, now: Instant) -> Vec<SentPacket> {
        let mut state = self.state.lock().expect("not poisoned");
        if state
            .keyframe_resent
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_RESEND_INTERVAL)
        {
            return Vec::new();
        }
        let Some(latest) = state.history.iter().rev().find(|sent| sent.frame.keyframe) else {
            return Vec::new();
        };
        let frame = latest.frame.clone();
        let timestamp = latest.timestamp;
        let chunks: Vec<SentPacket> = state
            .history
            .iter()
            .filter(|sent| Arc::ptr_eq(&sent.frame, &frame) && sent.timestamp == timestamp)
            .cloned()
            .collect();
        let whole = chunks.first().is_some_and(|first| first.chunk == 0)
            && chunks.len() == frame.packets.get_or_cut(|| cut(self.codec, &frame.data)).len();
        if !whole {
            return Vec::new();
        }
        let first_sequence = state.next_sequence;
        state.next_sequence = first_sequence.wrapping_add(chunks.len() as u16);
        let again: Vec<SentPacket> = chunks
            .into_iter()
            .enumerate()
            .map(|(index, sent)| SentPacket {
                sequence: first_sequence.wrapping_add(index as u16),
                ..sent
            })
            .collect();
        state.record(&again);
        state.keyframe_resent = Some(now);
        again
    }

    /// The header and plain packet (header and payload) of a sent packet, with its transport-wide
    /// sequence number as the extension of the given id.
    fn build(&self, sent: &SentPacket, transport_cc: Option<(u8, u16)>) -> (rtc::rtp::Header, BytesMut) {
        let payloads = sent.frame.packets.get_or_cut(|| cut(self.codec, &sent.frame.data));
        let payload = &payloads[sent.chunk];
        let mut header = rtc::rtp::Header {
            version: 2,
            marker: sent.chunk + 1 == payloads.len() && self.codec.is_video(),
            payload_type: self.payload_type,
            sequence_number: sent.sequence,
            timestamp: sent.timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if let Some((id, sequence)) = transport_cc {
            // Ids of the one-byte form (1–14) are what is negotiated here; another is left out.
            let _ = header.set_extension(id, Bytes::copy_from_slice(&sequence.to_be_bytes()));
        }
        let header_size = header.marshal_size();
        let mut plain = BytesMut::with_capacity(header_size + payload.len() + VP8_PICTURE_ID_BYTES + 16);
        plain.resize(header_size, 0);
        // The buffer has the header's own size.
        let _ = header.marshal_to(&mut plain[..]);
        put_payload(self.codec, payload, sent.picture_id, &mut plain);
        (header, plain)
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
    fn ntp_time_counts_from_1900() {
        let seconds = ntp_now() >> 32;
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(seconds.abs_diff(unix + NTP_UNIX_OFFSET) <= 1);
    }
}
