//! A server peer: one sending track per media track of what it plays, each fed by its own
//! [`Viewer`] of a shared [`Playback`] (so every peer starts on a keyframe and all share one demux),
//! with GCC congestion control over TWCC giving a bandwidth estimate. A source may have several
//! renditions; the peer switches between them at keyframes when told to.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, NackResponderBuilder, PacerBuilder, Registry, Slot};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;
use rtc::statistics::stats::RTCStatsType;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    CongestionFeedback, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceConnectionState, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder, configure_congestion_control,
    register_default_interceptors,
};

use super::codecs::{
    H264_MAIN_PAYLOAD_TYPE, RTX_PAYLOAD_TYPES, h264_main_codec, h264_profile_of, negotiated_rtx, rtp_codec, rtx_codec,
    track_codec,
};
use super::direct::{DirectOpener, EstimateOut, Rtx, TapRuntime};
use super::ice::{IceCandidate, IceServer, ice_ufrag, refuse_restart};
use super::sink::{Output, Sent, forward};
use super::stack_path::{NACK_BUFFER, PublishedEstimate, StackSink};
use crate::error::{Error, Result};
use crate::media::playback::Playback;
use crate::media::{Codec, TrackInfo};

/// How peers are built.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerConfig {
    pub ice_servers: Vec<IceServer>,
    /// The address ICE binds (one UDP socket per peer, on an ephemeral port).
    pub bind: IpAddr,
    /// Where the bandwidth estimate starts (the pacer sends at the estimate).
    pub initial_bitrate_bps: f64,
    /// Silence from the remote after which the connection counts as disconnected…
    pub ice_disconnected_timeout: Duration,
    /// …and the further silence after which it has failed and is closed: a viewer that vanished
    /// without a word stops costing its media this long after its last packet.
    pub ice_failed_timeout: Duration,
    /// Media of connections over a UDP pair of ours goes on the direct path
    /// ([`super::direct`]) rather than through the stack's per-connection pipeline.
    pub direct_media: bool,
}

impl PeerConfig {
    /// Whether a connection may go through a TURN relay, where the direct path cannot go.
    pub fn may_relay(&self) -> bool {
        self.ice_servers
            .iter()
            .flat_map(|server| &server.urls)
            .any(|url| url.starts_with("turn:") || url.starts_with("turns:"))
    }
}

/// Has the SDP offer what the direct path answers for: NACK and PLI on video, transport-wide
/// congestion control on both kinds.
fn announce_direct_feedback(media: &mut MediaEngine) -> std::result::Result<(), webrtc::error::Error> {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    };
    media.register_feedback(feedback("nack", ""), RtpCodecKind::Video);
    media.register_feedback(feedback("nack", "pli"), RtpCodecKind::Video);
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        media.register_feedback(feedback("transport-cc", ""), kind);
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.into(),
            },
            kind,
            None,
        )?;
    }
    Ok(())
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
            initial_bitrate_bps: 2_000_000.0,
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(10),
            direct_media: true,
        }
    }
}

/// What a peer tells its signaling channel.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the remote side.
    Candidate(IceCandidate),
    /// The connection's state changed (`connected`, `failed`, `closed`…).
    State(String),
}

/// A media source of a peer: the renditions of one piece of media (the same tracks at several
/// bitrates, started together so they share a clock) and which one is sent.
#[derive(Clone)]
pub struct Source {
    pub renditions: Arc<[Arc<Playback>]>,
    pub selected: watch::Receiver<usize>,
}

/// What a peer has sent, and how the path to its remote looks.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PeerStats {
    pub state: String,
    /// How the media goes: `direct` (the server's own path over the connection's UDP socket) or
    /// `stack` (through the WebRTC stack's pipeline: a relayed or TCP pair, or the direct path
    /// turned off); empty before the first frame.
    pub media_path: String,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// RTP packets the transport sent (retransmissions not included).
    pub packets_sent: u64,
    /// Packets sent again on a NACK or a keyframe request.
    pub packets_retransmitted: u64,
    /// Frames sent again in answer to keyframe requests (PLI, FIR): the latest keyframe and the
    /// frames after it, which a receiver decodes as new frames (so they count in its own
    /// decoded frames); not in `frames_sent`.
    pub frames_replayed: u64,
    /// How video packets asked for again are sent: `rtx` (a repair stream of their own, RFC 4588,
    /// where the remote negotiated it) or `resend` (as they first went); empty before the first
    /// frame.
    pub repair: String,
    /// The congestion controller's target, in bits per second.
    pub bandwidth_estimate_bps: f64,
    /// The rate the latest bandwidth probe reached the remote at, beside the media, in bits per
    /// second, while it counts (12 s); probes go where `auto` may step up (direct path only).
    pub bandwidth_probed_bps: Option<f64>,
    /// Packets sent to probe the bandwidth (copies of recent video packets).
    pub probe_packets: u64,
    /// Share of packets the remote reported lost (TWCC feedback).
    pub packet_loss: f64,
    /// Round trip time, from the congestion controller's feedback or else RTCP.
    pub rtt_ms: Option<f64>,
    /// Round trip time from RTCP receiver reports (which answer our sender reports).
    pub rtcp_rtt_ms: Option<f64>,
    /// Interarrival jitter the remote reported in RTCP receiver reports, in milliseconds.
    pub remote_jitter_ms: Option<f64>,
    /// Share of packets lost by the remote's RTCP receiver reports (the worst of its streams): on
    /// the direct path over the last window of at least 100 packets, on the stack's path in the
    /// last report.
    pub rtcp_fraction_lost: Option<f64>,
}

fn webrtc_error(context: &str) -> impl Fn(webrtc::error::Error) -> Error + '_ {
    move |e| Error::Input(format!("{context}: {e}"))
}

/// A peer connection that could not be made: for want of sockets (the server is out of open
/// files, which passes), or for its configuration (a stream's ICE servers, which the client gave).
fn peer_creation_error(e: webrtc::error::Error) -> Error {
    let message = format!("creating the peer connection: {e}");
    match e {
        webrtc::error::Error::Io(_) => Error::AtCapacity(message),
        webrtc::error::Error::Other(ref text) if text.contains("no udp_sockets") => Error::AtCapacity(message),
        _ => Error::Input(message),
    }
}

/// Forwards the connection's events; kept short, as they run on the connection's driver.
struct Events {
    events: mpsc::Sender<PeerEvent>,
    state: watch::Sender<RTCPeerConnectionState>,
    /// Whether ICE has a working pair (DTLS may still be running over it).
    ice_connected: watch::Sender<bool>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.events.try_send(PeerEvent::Candidate(candidate.into()));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let connected = matches!(
            state,
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
        );
        self.ice_connected
            .send_if_modified(|was| std::mem::replace(was, connected) != connected);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
        let _ = self.events.try_send(PeerEvent::State(state.to_string()));
    }
}

/// A server peer sending media sources.
pub struct Peer {
    connection: Arc<dyn PeerConnection>,
    estimate: Arc<AtomicU64>,
    estimator_stats: Arc<Mutex<EstimatorStats>>,
    direct: Arc<DirectOpener>,
    state: watch::Receiver<RTCPeerConnectionState>,
    ice_connected: watch::Receiver<bool>,
    gathered: watch::Receiver<bool>,
    forwarders: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    sent: Arc<Sent>,
    /// A video track sends its repairs over RTX.
    repair_over_rtx: Arc<AtomicBool>,
    /// Called with the bytes of every frame sent (the live counters of the server).
    on_sent: Arc<dyn Fn(u64) + Send + Sync>,
    remote_ice: Mutex<RemoteIce>,
}

/// What the remote has said of its ICE so far.
enum RemoteIce {
    /// No description yet: candidates trickled ahead of it (clients often send their first ones
    /// ahead of their answer) wait to be applied with it, not refused.
    Awaited(Vec<IceCandidate>),
    /// Its description's username fragment.
    Known(Option<String>),
}

impl Peer {
    /// A peer with no media yet, and the events to relay (trickled candidates, state changes).
    pub async fn new(
        config: &PeerConfig,
        on_sent: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(Arc<Self>, mpsc::Receiver<PeerEvent>)> {
        let mut media = MediaEngine::default();
        let codecs = [Codec::H264, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::Opus]
            .map(rtp_codec)
            .into_iter()
            .chain([(h264_main_codec().rtp_codec, H264_MAIN_PAYLOAD_TYPE, RtpCodecKind::Video)]);
        for (rtp_codec, payload_type, kind) in codecs {
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec,
                        payload_type,
                    },
                    kind,
                )
                .map_err(webrtc_error("registering codecs"))?;
        }
        // A repair stream (RFC 4588) for every video codec, as browsers offer and take them.
        for (payload_type, primary) in RTX_PAYLOAD_TYPES {
            media
                .register_codec(rtx_codec(payload_type, primary), RtpCodecKind::Video)
                .map_err(webrtc_error("registering codecs"))?;
        }
        let estimate_out = EstimateOut::new(config.initial_bitrate_bps);
        let estimate = estimate_out.target.clone();
        let estimator_stats = estimate_out.stats.clone();
        let estimator = PublishedEstimate {
            gcc: super::direct::new_gcc(config.initial_bitrate_bps),
            out: estimate_out.clone(),
            informed: false,
        };
        if config.direct_media {
            super::direct::export_srtp_contexts();
        }
        let runtime = Arc::new(TapRuntime::default());
        let registry = if config.direct_media && !config.may_relay() {
            // Every candidate pair is a UDP socket of ours, so the direct path carries all the
            // media: the stack negotiates what it answers for, and runs no media pipeline (whose
            // timers would wake every connection's driver many times a second for nothing).
            announce_direct_feedback(&mut media).map_err(webrtc_error("feedback"))?;
            Registry::new()
        } else {
            // The stack's own pacer would start at a fixed 1 Mbps until the estimate moves.
            let initial_pacing_bps = estimator.target_bitrate();
            let registry =
                configure_congestion_control(Registry::new(), estimator, CongestionFeedback::Twcc, &mut media)
                    .map_err(webrtc_error("congestion control"))?;
            register_default_interceptors(registry, &mut media)
                .map_err(webrtc_error("interceptors"))?
                // Packets kept per viewer for retransmission. The default 1024 held ~18 s of a
                // 0.5 Mbps video, about 1.5 MB: most of a viewer's memory. A NACK is worth
                // answering only within the receiver's jitter buffer; 256 still covers half a
                // second at 4 Mbps.
                .with(
                    Slot::NackResponder,
                    NackResponderBuilder::new().with_size(NACK_BUFFER).build(),
                )
                .with(
                    Slot::Pacer,
                    PacerBuilder::new().with_target_bitrate(initial_pacing_bps).build(),
                )
        };
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone().unwrap_or_default(),
                credential: server.credential.clone().unwrap_or_default(),
            })
            .collect();
        let (events_out, events) = mpsc::channel(256);
        let (state_out, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_out, gathered) = watch::channel(false);
        let (ice_connected_out, ice_connected) = watch::channel(false);
        let connection = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    // Answering (WHEP), we wait for the client's ClientHello: it comes as soon as
                    // the client's ICE is up, while a browser acting as DTLS server answered our
                    // ClientHello about 150 ms late.
                    .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server)
                    // Offering (the WebSocket signaling), we nominate the pair. A browser's
                    // candidates often first appear as peer-reflexive, which ICE by default
                    // holds back for a second in case a better pair shows up: a direct path is
                    // as good as it gets here. Checks every 50 ms (RFC 8445's Ta) rather than
                    // 200, with as many attempts over a similar span.
                    .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
                    .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(25))
                    .with_ice_timeouts(
                        Some(config.ice_disconnected_timeout),
                        Some(config.ice_failed_timeout),
                        None,
                    )
                    .build(),
            )
            .with_handler(Arc::new(Events {
                events: events_out,
                state: state_out,
                ice_connected: ice_connected_out,
                gathered: gathered_out,
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind, 0)])
            .with_runtime(runtime.clone())
            .build()
            .await
            .map_err(peer_creation_error)?;
        let connection: Arc<dyn PeerConnection> = Arc::new(connection);
        let peer = Arc::new(Self {
            connection: connection.clone(),
            estimate,
            estimator_stats,
            direct: Arc::new(DirectOpener {
                enabled: config.direct_media,
                connection,
                runtime,
                estimate: estimate_out,
                initial_bitrate_bps: config.initial_bitrate_bps,
                route: tokio::sync::OnceCell::new(),
                path: tokio::sync::OnceCell::new(),
            }),
            state,
            ice_connected,
            gathered,
            forwarders: Mutex::new(Vec::new()),
            sent: Arc::new(Sent::default()),
            repair_over_rtx: Arc::default(),
            on_sent,
            remote_ice: Mutex::new(RemoteIce::Awaited(Vec::new())),
        });
        Ok((peer, events))
    }

    /// Adds one sending track per track of `source`; frames flow once the connection is up and
    /// the track negotiated.
    pub async fn attach(&self, source: Source) -> Result<()> {
        let tracks: Vec<TrackInfo> = source.renditions[0].tracks().to_vec();
        // The tracks' viewers all subscribe before the playback starts, so none misses the first
        // keyframe and waits a whole GOP for the next.
        let subscribed = Arc::new(tokio::sync::Barrier::new(tracks.len()));
        for track in tracks {
            let subscribed = subscribed.clone();
            let (codec, kind) = track_codec(&track);
            let mime_type = codec.mime_type.clone();
            let profile = h264_profile_of(&codec.sdp_fmtp_line);
            let ssrc: u32 = rand::random();
            let rtx_ssrc: Option<u32> = (kind == RtpCodecKind::Video).then(rand::random);
            let local = Arc::new(
                TrackLocalStaticSample::new(
                    Instant::now(),
                    MediaStreamTrack::new(
                        "ipfs-stream".into(),
                        format!("{}-{}", track.codec.name().to_lowercase().replace('.', ""), track.index),
                        track.codec.name().into(),
                        kind,
                        vec![RTCRtpEncodingParameters {
                            rtp_coding_parameters: RTCRtpCodingParameters {
                                ssrc: Some(ssrc),
                                rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                                ..Default::default()
                            },
                            codec,
                            ..Default::default()
                        }],
                    ),
                )
                .map_err(webrtc_error("creating a track"))?,
            );
            let sender = self
                .connection
                .add_track(local.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(webrtc_error("adding a track"))?;
            let mut state = self.state.clone();
            let mut ice_connected = self.ice_connected.clone();
            let source = source.clone();
            let sent = self.sent.clone();
            let repair_over_rtx = self.repair_over_rtx.clone();
            let on_sent = self.on_sent.clone();
            let direct = self.direct.clone();
            let forwarder = tokio::spawn(async move {
                // What the first frame needs from the stack is asked for while DTLS runs: the
                // negotiated payload type, and the direct path's route. Frames go out once the
                // whole connection is up.
                let ready = tokio::select! {
                    ice = ice_connected.wait_for(|connected| *connected) => ice.is_ok(),
                    up = state.wait_for(|s| *s == RTCPeerConnectionState::Connected) => up.is_ok(),
                };
                if !ready {
                    return;
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                let (payload_type, transport_cc, rtx) = loop {
                    // The remote may list other codecs first (browsers offer VP8 first): the
                    // payload type is the one negotiated for this track's codec.
                    // Of H.264, the entry of the track's profile if the remote took it, else any.
                    if let Ok(parameters) = sender.get_parameters().await {
                        let codecs = &parameters.rtp_parameters.codecs;
                        let same_codec =
                            |c: &&RTCRtpCodecParameters| c.rtp_codec.mime_type.eq_ignore_ascii_case(&mime_type);
                        let chosen = codecs
                            .iter()
                            .filter(same_codec)
                            .find(|c| h264_profile_of(&c.rtp_codec.sdp_fmtp_line) == profile)
                            .or_else(|| codecs.iter().find(same_codec));
                        if let Some(codec) = chosen {
                            let transport_cc = parameters
                                .rtp_parameters
                                .header_extensions
                                .iter()
                                .find(|extension| extension.uri == rtc::sdp::extmap::TRANSPORT_CC_URI)
                                .and_then(|extension| u8::try_from(extension.id).ok());
                            let rtx = rtx_ssrc
                                .zip(negotiated_rtx(codecs, codec.payload_type))
                                .map(|(ssrc, payload_type)| Rtx { ssrc, payload_type });
                            if rtx.is_some() {
                                repair_over_rtx.store(true, Ordering::Relaxed);
                            }
                            break (codec.payload_type, transport_cc, rtx);
                        }
                    }
                    if Instant::now() > deadline {
                        tracing::warn!(track = track.index, %mime_type, "the remote did not accept the track's codec");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                direct.route(sender.as_ref()).await;
                if state
                    .wait_for(|s| *s == RTCPeerConnectionState::Connected)
                    .await
                    .is_err()
                {
                    return;
                }
                match direct.path(sender.as_ref(), transport_cc).await {
                    Some(path) => {
                        let sink = path.track(track.codec, ssrc, payload_type, rtx);
                        forward(source, track.index, Output { sink, sent, on_sent }, subscribed).await;
                    }
                    None => {
                        let sink = StackSink {
                            local,
                            ssrc,
                            payload_type,
                        };
                        forward(source, track.index, Output { sink, sent, on_sent }, subscribed).await;
                    }
                }
            });
            self.forwarders.lock().expect("not poisoned").push(forwarder);
        }
        Ok(())
    }

    /// A new offer (first negotiation or renegotiation after [`Peer::attach`]).
    pub async fn offer(&self) -> Result<String> {
        let offer = self
            .connection
            .create_offer(None)
            .await
            .map_err(webrtc_error("creating the offer"))?;
        let sdp = offer.sdp.clone();
        self.connection
            .set_local_description(offer)
            .await
            .map_err(webrtc_error("setting the offer"))?;
        Ok(sdp)
    }

    /// Applies the remote answer to our offer.
    pub async fn answer(&self, sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| Error::Input(format!("sdp: not a valid answer: {e}")))?;
        self.connection
            .set_remote_description(answer)
            .await
            .map_err(webrtc_error("sdp"))?;
        self.remote_described(sdp).await;
        Ok(())
    }

    /// Takes note of the remote description's username fragment, and applies the candidates that
    /// came before it (checked against it, in one step with the note, so none slips past).
    async fn remote_described(&self, sdp: &str) {
        let ufrag = ice_ufrag(sdp).map(str::to_owned);
        let early = {
            let mut remote = self.remote_ice.lock().expect("not poisoned");
            match std::mem::replace(&mut *remote, RemoteIce::Known(ufrag.clone())) {
                RemoteIce::Awaited(early) => early,
                RemoteIce::Known(_) => Vec::new(),
            }
        };
        for candidate in early {
            let applied = match refuse_restart(&candidate, ufrag.as_deref()) {
                Ok(()) => self.apply_candidate(candidate).await,
                Err(refused) => Err(refused),
            };
            if let Err(error) = applied {
                tracing::debug!(%error, "an early candidate was refused");
            }
        }
    }

    /// Answers a remote offer (WHEP); the answer carries the candidates gathered within
    /// `gather_timeout`, later ones trickle as events.
    pub async fn accept(&self, offer_sdp: &str, gather_timeout: Duration) -> Result<String> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| Error::Input(format!("sdp: not a valid offer: {e}")))?;
        self.connection
            .set_remote_description(offer)
            .await
            .map_err(webrtc_error("sdp"))?;
        self.remote_described(offer_sdp).await;
        let answer = self
            .connection
            .create_answer(None)
            .await
            .map_err(webrtc_error("creating the answer"))?;
        self.connection
            .set_local_description(answer)
            .await
            .map_err(webrtc_error("setting the answer"))?;
        let mut gathered = self.gathered.clone();
        let _ = tokio::time::timeout(gather_timeout, gathered.wait_for(|done| *done)).await;
        self.connection
            .local_description()
            .await
            .map(|description| description.sdp)
            .ok_or_else(|| Error::Input("sdp: no local description after answering".into()))
    }

    /// Adds a remote ICE candidate (kept until the remote description if that has not come yet).
    pub async fn add_candidate(&self, candidate: IceCandidate) -> Result<()> {
        // An empty candidate is the end of candidates: nothing to add, but its username fragment
        // is checked all the same (an ICE restart may come without candidates).
        let end_of_candidates = candidate.candidate.trim().is_empty();
        {
            let mut remote = self.remote_ice.lock().expect("not poisoned");
            match &mut *remote {
                RemoteIce::Known(ufrag) => refuse_restart(&candidate, ufrag.as_deref())?,
                RemoteIce::Awaited(_) if end_of_candidates => return Ok(()),
                RemoteIce::Awaited(early) => {
                    if early.len() >= 64 {
                        return Err(Error::Input("candidate: more than 64 before the answer".into()));
                    }
                    early.push(candidate);
                    return Ok(());
                }
            }
        }
        if end_of_candidates {
            return Ok(());
        }
        self.apply_candidate(candidate).await
    }

    async fn apply_candidate(&self, candidate: IceCandidate) -> Result<()> {
        self.connection
            .add_ice_candidate(candidate.into())
            .await
            .map_err(webrtc_error("candidate"))
    }

    /// Frames and bytes of media sent so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent.frames.load(Ordering::Relaxed),
            self.sent.bytes.load(Ordering::Relaxed),
        )
    }

    /// The congestion controller's current estimate, in bits per second.
    pub fn bandwidth_estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    /// What the latest bandwidth probe showed the path carries beside the media, while that
    /// counts; `Some(0.0)` before any probe where the media path probes (the direct path with
    /// transport-wide feedback), `None` where it cannot (the stack's, or no such feedback).
    pub fn probed_bandwidth(&self) -> Option<f64> {
        self.direct
            .opened()
            .filter(|direct| direct.can_probe())
            .map(|direct| direct.probed_bps().unwrap_or(0.0))
    }

    /// Probes the path at `rate_bps`, where the media path probes (at most one probe each 5 s).
    pub fn probe(&self, rate_bps: f64) {
        if let Some(direct) = self.direct.opened() {
            direct.probe(rate_bps);
        }
    }

    /// Loss the congestion controller saw in TWCC feedback (0–1).
    pub fn packet_loss(&self) -> f64 {
        self.estimator_stats
            .lock()
            .expect("not poisoned")
            .packet_loss
            .unwrap_or(0.0)
    }

    pub fn state(&self) -> watch::Receiver<RTCPeerConnectionState> {
        self.state.clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// Counters, the estimate and what RTCP and TWCC say of the path.
    pub async fn stats(&self) -> PeerStats {
        let estimator = *self.estimator_stats.lock().expect("not poisoned");
        let mut stats = PeerStats {
            state: self.state.borrow().to_string(),
            repair: match (
                self.repair_over_rtx.load(Ordering::Relaxed),
                self.sent.frames.load(Ordering::Relaxed),
            ) {
                (true, _) => "rtx".into(),
                (false, 0) => String::new(),
                (false, _) => "resend".into(),
            },
            frames_sent: self.sent.frames.load(Ordering::Relaxed),
            bytes_sent: self.sent.bytes.load(Ordering::Relaxed),
            bandwidth_estimate_bps: self.bandwidth_estimate(),
            packet_loss: estimator.packet_loss.unwrap_or(0.0),
            rtt_ms: estimator.round_trip_time.map(|rtt| rtt.as_secs_f64() * 1000.0),
            ..Default::default()
        };
        if let Some(direct) = self.direct.opened() {
            // The stack sees none of the media: what is known of it is the direct path's, with no
            // call into the connection's driver.
            let direct = direct.stats();
            stats.media_path = "direct".into();
            stats.packets_sent = direct.packets_sent;
            stats.packets_retransmitted = direct.retransmitted;
            stats.frames_replayed = direct.frames_replayed;
            stats.bandwidth_probed_bps = direct.probed_bps;
            stats.probe_packets = direct.probe_packets;
            stats.remote_jitter_ms = direct.remote_jitter_ms;
            stats.rtcp_fraction_lost = direct.rtcp_fraction_lost;
            stats.rtcp_rtt_ms = direct.rtt_ms;
            stats.rtt_ms = stats.rtt_ms.or(direct.rtt_ms);
            return stats;
        }
        if stats.frames_sent > 0 {
            stats.media_path = "stack".into();
        }
        let report = self.connection.get_stats(Instant::now(), StatsSelector::None).await;
        for outbound in report.outbound_rtp_streams() {
            stats.packets_sent += outbound.sent_rtp_stream_stats.packets_sent;
            stats.packets_retransmitted += outbound.retransmitted_packets_sent;
        }
        for entry in report.iter_by_type(RTCStatsType::RemoteInboundRTP) {
            if let RTCStatsReportEntry::RemoteInboundRtp(remote) = entry {
                let jitter = remote.received_rtp_stream_stats.jitter * 1000.0;
                stats.remote_jitter_ms = Some(stats.remote_jitter_ms.unwrap_or(0.0).max(jitter));
                stats.rtcp_fraction_lost = Some(stats.rtcp_fraction_lost.unwrap_or(0.0).max(remote.fraction_lost));
                if remote.round_trip_time_measurements > 0 {
                    stats.rtcp_rtt_ms = Some(remote.round_trip_time * 1000.0);
                    stats.rtt_ms = stats.rtt_ms.or(stats.rtcp_rtt_ms);
                }
            }
        }
        stats
    }

    /// Stops sending and closes the connection (its tasks end with it).
    pub async fn close(&self) {
        for forwarder in self.forwarders.lock().expect("not poisoned").drain(..) {
            forwarder.abort();
        }
        if let Some(direct) = self.direct.opened() {
            direct.stop();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.connection.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_without_sockets_is_the_servers_capacity_and_a_bad_configuration_the_clients() {
        let no_sockets = webrtc::error::Error::Other("no udp_sockets or tcp_listeners available".into());
        assert!(matches!(peer_creation_error(no_sockets), Error::AtCapacity(_)));
        let io = webrtc::error::Error::from(std::io::Error::from_raw_os_error(24));
        assert!(matches!(peer_creation_error(io), Error::AtCapacity(_)));
        let turn = webrtc::error::Error::ErrNoTurnCredentials;
        assert!(matches!(peer_creation_error(turn), Error::Input(_)));
    }
}
