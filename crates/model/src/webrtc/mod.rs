//! WebRTC peers that play a [`Playback`]: the server offers one sending track per media track,
//! each fed from its own [`Viewer`] of the playback (so every peer starts on a keyframe and all
//! share one demux), with GCC congestion control over TWCC giving a bandwidth estimate.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport, Registry};
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    CongestionFeedback, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder, configure_congestion_control, register_default_interceptors,
};

use crate::error::{Error, Result};
use crate::media::Codec;
use crate::media::playback::{Playback, Viewer};

/// A STUN or TURN server for the peer's ICE agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// How peers are built.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerConfig {
    pub ice_servers: Vec<IceServer>,
    /// The address ICE binds (one UDP socket per peer, on an ephemeral port).
    pub bind: IpAddr,
    /// Where the bandwidth estimate starts (the pacer sends at the estimate).
    pub initial_bitrate_bps: f64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
            initial_bitrate_bps: 2_000_000.0,
        }
    }
}

/// What a peer tells its signaling channel.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the remote side.
    Candidate(RTCIceCandidateInit),
    /// The connection's state changed (`connected`, `failed`, `closed`…).
    State(String),
}

fn rtp_codec(codec: Codec) -> (RTCRtpCodec, u8, RtpCodecKind) {
    let (mime, rate, channels, fmtp, payload_type) = match codec {
        Codec::H264 => (
            "video/H264",
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        Codec::Vp8 => ("video/VP8", 90_000, 0, "", 96),
        Codec::Vp9 => ("video/VP9", 90_000, 0, "profile-id=0", 98),
        Codec::Av1 => ("video/AV1", 90_000, 0, "", 41),
        Codec::Opus => ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111),
    };
    let kind = if codec.is_video() {
        RtpCodecKind::Video
    } else {
        RtpCodecKind::Audio
    };
    let codec = RTCRtpCodec {
        mime_type: mime.into(),
        clock_rate: rate,
        channels,
        sdp_fmtp_line: fmtp.into(),
        rtcp_feedback: vec![],
    };
    (codec, payload_type, kind)
}

fn webrtc_error(context: &str) -> impl Fn(webrtc::error::Error) -> Error + '_ {
    move |e| Error::Input(format!("{context}: {e}"))
}

/// GCC whose target is published where the peer can read it.
struct PublishedEstimate {
    gcc: Gcc,
    target: Arc<AtomicU64>,
}

impl BandwidthEstimator for PublishedEstimate {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.gcc.on_reports(now, reports);
        self.target
            .store(self.gcc.target_bitrate().to_bits(), Ordering::Relaxed);
    }

    fn target_bitrate(&self) -> f64 {
        self.gcc.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
        self.target
            .store(self.gcc.target_bitrate().to_bits(), Ordering::Relaxed);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// Forwards the connection's events; kept short, as they run on the connection's driver.
struct Events {
    events: mpsc::Sender<PeerEvent>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.events.try_send(PeerEvent::Candidate(candidate));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
        let _ = self.events.try_send(PeerEvent::State(state.to_string()));
    }
}

/// A server peer sending a playback.
pub struct Peer {
    connection: Arc<dyn PeerConnection>,
    estimate: Arc<AtomicU64>,
    state: watch::Receiver<RTCPeerConnectionState>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Peer {
    /// A peer with one sending track per playback track; returns it with its SDP offer and the
    /// events to relay (trickled candidates, state changes).
    pub async fn offer(
        playback: &Arc<Playback>,
        config: &PeerConfig,
    ) -> Result<(Arc<Self>, String, mpsc::Receiver<PeerEvent>)> {
        let mut media = MediaEngine::default();
        for codec in [Codec::H264, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::Opus] {
            let (rtp_codec, payload_type, kind) = rtp_codec(codec);
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
        let estimate = Arc::new(AtomicU64::new(config.initial_bitrate_bps.to_bits()));
        let estimator = PublishedEstimate {
            gcc: Gcc::new(config.initial_bitrate_bps, 100_000.0, 50_000_000.0),
            target: estimate.clone(),
        };
        let registry = configure_congestion_control(Registry::new(), estimator, CongestionFeedback::Twcc, &mut media)
            .map_err(webrtc_error("congestion control"))?;
        let registry = register_default_interceptors(registry, &mut media).map_err(webrtc_error("interceptors"))?;
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
        let connection = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(Arc::new(Events {
                events: events_out,
                state: state_out,
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind, 0)])
            .build()
            .await
            .map_err(webrtc_error("creating the peer connection"))?;
        let connection: Arc<dyn PeerConnection> = Arc::new(connection);
        let mut tracks = Vec::new();
        for track in playback.tracks() {
            let (codec, _, kind) = rtp_codec(track.codec);
            let ssrc: u32 = rand::random();
            let local = Arc::new(
                TrackLocalStaticSample::new(
                    Instant::now(),
                    MediaStreamTrack::new(
                        "ipfs-stream".into(),
                        format!("{}-{}", track.codec.name().to_lowercase(), track.index),
                        track.codec.name().into(),
                        kind,
                        vec![RTCRtpEncodingParameters {
                            rtp_coding_parameters: RTCRtpCodingParameters {
                                ssrc: Some(ssrc),
                                ..Default::default()
                            },
                            codec,
                            ..Default::default()
                        }],
                    ),
                )
                .map_err(webrtc_error("creating a track"))?,
            );
            let sender = connection
                .add_track(local.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(webrtc_error("adding a track"))?;
            tracks.push((track.index, ssrc, local, sender));
        }
        let offer = connection
            .create_offer(None)
            .await
            .map_err(webrtc_error("creating the offer"))?;
        let sdp = offer.sdp.clone();
        connection
            .set_local_description(offer)
            .await
            .map_err(webrtc_error("setting the offer"))?;
        let mut forwarders = Vec::new();
        for (index, ssrc, local, sender) in tracks {
            let viewer = playback.subscribe();
            let mut state = state.clone();
            forwarders.push(tokio::spawn(async move {
                // Frames go out once the connection is up; until then the viewer waits.
                if state
                    .wait_for(|s| *s == RTCPeerConnectionState::Connected)
                    .await
                    .is_err()
                {
                    return;
                }
                let payload_type = match sender.get_parameters().await {
                    Ok(parameters) => parameters.rtp_parameters.codecs.first().map(|c| c.payload_type),
                    Err(_) => None,
                };
                if let Some(payload_type) = payload_type {
                    forward(viewer, index, ssrc, payload_type, local).await;
                }
            }));
        }
        let peer = Arc::new(Self {
            connection,
            estimate,
            state,
            forwarders,
        });
        Ok((peer, sdp, events))
    }

    /// Applies the remote answer.
    pub async fn answer(&self, sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| Error::Input(format!("sdp: not a valid answer: {e}")))?;
        self.connection
            .set_remote_description(answer)
            .await
            .map_err(webrtc_error("sdp"))
    }

    /// Adds a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: RTCIceCandidateInit) -> Result<()> {
        self.connection
            .add_ice_candidate(candidate)
            .await
            .map_err(webrtc_error("candidate"))
    }

    /// The congestion controller's current estimate, in bits per second.
    pub fn bandwidth_estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// Stops sending and closes the connection (its tasks end with it).
    pub async fn close(&self) {
        for forwarder in &self.forwarders {
            forwarder.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.connection.close()).await;
    }
}

/// Sends one track's frames as samples; each lasts until the track's next frame begins (the
/// RTP clock advances by it).
async fn forward(mut viewer: Viewer, track: usize, ssrc: u32, payload_type: u8, local: Arc<TrackLocalStaticSample>) {
    let mut held: Option<Arc<crate::media::Frame>> = None;
    loop {
        let next = loop {
            match viewer.next().await {
                Some(frame) if frame.track == track => break Some(frame),
                Some(_) => continue,
                None => break None,
            }
        };
        if let Some(previous) = held.take() {
            let duration = match &next {
                Some(next) => next.timestamp.saturating_sub(previous.timestamp),
                None => previous.duration,
            };
            let sample = Sample {
                data: previous.data.clone(),
                duration,
                ..Sample::new(Instant::now())
            };
            if let Err(error) = local.write_sample(ssrc, payload_type, &sample, &[]).await {
                tracing::debug!(%error, "sample not sent");
                return;
            }
        }
        match next {
            Some(frame) => held = Some(frame),
            None => return,
        }
    }
}
