//! A receiving WebRTC peer (webrtc-rs) that reassembles the frames it gets and notes their RTP
//! timestamps, keyframe flags and arrival times: the viewer of the simulator and of the load
//! benchmark, and the client of the end-to-end tests. It either offers (WHEP) or answers the
//! server's offer (WebSocket signaling).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::Registry;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
    register_default_interceptors,
};

use super::frame_assembly::{FrameAssembly, Packet};
use super::ice::IceCandidate;
use crate::error::{Error, Result};

/// One reassembled frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedFrame {
    /// `video/VP8`, `video/H264`, `audio/opus`…
    pub mime_type: String,
    pub rtp_timestamp: u32,
    /// The RTP payload type it came with (which of the negotiated codec entries).
    pub payload_type: u8,
    pub keyframe: bool,
    /// Whether a decoder could use it: false from a frame given up (a gap not repaired in time)
    /// to the next keyframe.
    pub decodable: bool,
    pub bytes: usize,
    pub arrived: Instant,
}

type Frames = Arc<Mutex<Vec<ReceivedFrame>>>;

/// The video tracks received so far, with their SSRC (what a keyframe request names).
type VideoTracks = Arc<Mutex<Vec<(Arc<dyn TrackRemote>, u32)>>>;

/// What the assembly of every track counted.
#[derive(Default)]
struct AssemblyCounts {
    /// Packets that arrived after a later one of their stream: reordered, or sent again on a NACK.
    late: AtomicU64,
    frames_given_up: AtomicU64,
}

type Counts = Arc<AssemblyCounts>;

struct Handler {
    candidates: mpsc::Sender<IceCandidate>,
    frames: Frames,
    counts: Counts,
    video: VideoTracks,
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.candidates.try_send(candidate.into());
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(reassemble(
            track,
            self.frames.clone(),
            self.counts.clone(),
            self.video.clone(),
        ));
    }
}

/// Whether a reassembled frame is one a decoder can start from (`kind`: the lower-case mime type).
fn is_keyframe(kind: &str, data: &[u8]) -> bool {
    match kind {
        // VP8 frame tag: bit 0 is 0 on key frames.
        "video/vp8" => data.first().is_some_and(|b| b & 1 == 0),
        // An IDR slice or parameter sets in the access unit (Annex-B out of the depacketizer).
        "video/h264" => data
            .windows(4)
            .filter(|w| w[..3] == [0, 0, 1])
            .any(|w| matches!(w[3] & 0x1f, 5 | 7)),
        _ => true,
    }
}

/// The video a viewer would have seen, from the frames a decoder could use: how many, over what
/// span, and its freezes as WebRTC's statistics define them (an interval between two frames of
/// at least 3 times the average of the 30 before, and at least 150 ms over it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VideoSeen {
    pub frames_received: usize,
    pub frames_decodable: usize,
    /// From the first decodable frame to the last.
    pub span: Duration,
    pub freezes: usize,
    pub total_freeze: Duration,
}

impl VideoSeen {
    pub fn of(frames: &[ReceivedFrame]) -> Self {
        let video: Vec<&ReceivedFrame> = frames.iter().filter(|f| f.mime_type.starts_with("video")).collect();
        let shown: Vec<Instant> = video.iter().filter(|f| f.decodable).map(|f| f.arrived).collect();
        let mut playback = Self {
            frames_received: video.len(),
            frames_decodable: shown.len(),
            span: match (shown.first(), shown.last()) {
                (Some(first), Some(last)) => last.duration_since(*first),
                _ => Duration::ZERO,
            },
            ..Self::default()
        };
        let intervals: Vec<Duration> = shown.windows(2).map(|pair| pair[1].duration_since(pair[0])).collect();
        for (index, interval) in intervals.iter().enumerate() {
            let recent = &intervals[index.saturating_sub(30)..index];
            if recent.is_empty() {
                continue;
            }
            let average = recent.iter().sum::<Duration>() / recent.len() as u32;
            if *interval >= (average * 3).max(average + Duration::from_millis(150)) {
                playback.freezes += 1;
                playback.total_freeze += *interval;
            }
        }
        playback
    }
}

/// How long a gap in a video stream is held open for its repair before the frames it broke are
/// given up (a browser's jitter buffer waits about as long at this round trip).
const REPAIR_WAIT: Duration = Duration::from_millis(500);

/// One received stream (an SSRC) of a track: its codec, as looked up once, and its assembly.
struct Stream {
    mime_type: String,
    /// The mime type in lower case, for matching.
    kind: String,
    audio: bool,
    assembly: FrameAssembly,
    /// A decoder cannot use what follows a frame given up, until the next keyframe.
    broken_chain: bool,
}

async fn reassemble(track: Arc<dyn TrackRemote>, frames: Frames, counts: Counts, video: VideoTracks) {
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    let mut vp8 = Vp8Packet::default();
    let mut h264 = H264Packet::default();
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let ssrc = packet.header.ssrc;
        let stream = match streams.entry(ssrc) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let mime_type = track.codec(ssrc).await.map(|c| c.mime_type).unwrap_or_default();
                let kind = mime_type.to_ascii_lowercase();
                if kind.starts_with("video") {
                    video.lock().expect("not poisoned").push((track.clone(), ssrc));
                }
                new.insert(Stream {
                    audio: kind.starts_with("audio"),
                    mime_type,
                    kind,
                    assembly: FrameAssembly::new(REPAIR_WAIT),
                    broken_chain: false,
                })
            }
        };
        let (late_before, given_up_before) = (stream.assembly.late, stream.assembly.frames_given_up);
        let assembled = stream.assembly.push(
            packet.header.sequence_number,
            Packet {
                timestamp: packet.header.timestamp,
                marker: packet.header.marker || stream.audio,
                payload_type: packet.header.payload_type,
                payload: packet.payload.clone(),
            },
            Instant::now(),
        );
        let given_up = stream.assembly.frames_given_up - given_up_before;
        counts
            .late
            .fetch_add(stream.assembly.late - late_before, Ordering::Relaxed);
        counts.frames_given_up.fetch_add(given_up, Ordering::Relaxed);
        if given_up > 0 && !stream.audio {
            // As a decoder that cannot go on does: ask for a keyframe.
            let request = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            };
            let _ = track.write_rtcp(vec![Box::new(request)]).await;
        }
        for frame in assembled {
            let mut data = Vec::new();
            for packet in &frame.packets {
                let payload = match stream.kind.as_str() {
                    "video/vp8" => vp8.depacketize(&packet.payload).map(|b| b.to_vec()),
                    "video/h264" => h264.depacketize(&packet.payload).map(|b| b.to_vec()),
                    _ => Ok(packet.payload.to_vec()),
                };
                if let Ok(payload) = payload {
                    data.extend_from_slice(&payload);
                }
            }
            let keyframe = is_keyframe(&stream.kind, &data);
            stream.broken_chain = !stream.audio && !keyframe && (stream.broken_chain || frame.after_gap);
            frames.lock().expect("not poisoned").push(ReceivedFrame {
                keyframe,
                decodable: !stream.broken_chain,
                mime_type: stream.mime_type.clone(),
                rtp_timestamp: frame.packets[0].timestamp,
                payload_type: frame.packets[0].payload_type,
                bytes: data.len(),
                arrived: Instant::now(),
            });
        }
    }
}

fn error(context: &str) -> impl Fn(webrtc::error::Error) -> Error + '_ {
    move |e| Error::Input(format!("{context}: {e}"))
}

/// A receive-only peer.
pub struct Receiver {
    connection: Arc<dyn PeerConnection>,
    frames: Frames,
    counts: Counts,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    video: VideoTracks,
}

impl Receiver {
    /// A receiver bound to `bind`, and its local candidates to trickle.
    pub async fn new(bind: IpAddr) -> Result<(Self, mpsc::Receiver<IceCandidate>)> {
        Self::build(bind, super::direct::TapRuntime::default()).await
    }

    /// A receiver that loses one in `every` RTP packet it is sent (the network's doing, as far
    /// as the sender can tell), for trying recovery.
    pub async fn losing_one_in(every: u32, bind: IpAddr) -> Result<(Self, mpsc::Receiver<IceCandidate>)> {
        Self::build(bind, super::direct::TapRuntime::losing_one_in(every)).await
    }

    async fn build(bind: IpAddr, runtime: super::direct::TapRuntime) -> Result<(Self, mpsc::Receiver<IceCandidate>)> {
        let mut media = MediaEngine::default();
        media.register_default_codecs().map_err(error("codecs"))?;
        // H.264 main too, which the defaults lack (as the server announces it).
        media
            .register_codec(super::codecs::h264_main_codec(), RtpCodecKind::Video)
            .map_err(error("codecs"))?;
        let registry = register_default_interceptors(Registry::new(), &mut media).map_err(error("interceptors"))?;
        let (candidates_out, candidates) = mpsc::channel(64);
        let (state_out, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_out, gathered) = watch::channel(false);
        let frames: Frames = Arc::default();
        let counts = Counts::default();
        let video: VideoTracks = Arc::default();
        let connection = PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(Arc::new(Handler {
                candidates: candidates_out,
                frames: frames.clone(),
                counts: counts.clone(),
                video: video.clone(),
                state: state_out,
                gathered: gathered_out,
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(bind, 0)])
            .with_runtime(Arc::new(runtime))
            .build()
            .await
            .map_err(error("creating the peer connection"))?;
        Ok((
            Self {
                connection: Arc::new(connection),
                frames,
                counts,
                state,
                gathered,
                video,
            },
            candidates,
        ))
    }

    /// An offer to receive one video and one audio track, with the candidates gathered within
    /// `gather_timeout` (for WHEP, which wants them in the offer).
    pub async fn offer(&self, gather_timeout: Duration) -> Result<String> {
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            self.connection
                .add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(error("transceiver"))?;
        }
        let offer = self.connection.create_offer(None).await.map_err(error("offer"))?;
        self.connection
            .set_local_description(offer)
            .await
            .map_err(error("offer"))?;
        self.local_description(gather_timeout).await
    }

    /// Answers the server's offer.
    pub async fn answer(&self, offer_sdp: &str) -> Result<String> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).map_err(error("offer"))?;
        self.connection
            .set_remote_description(offer)
            .await
            .map_err(error("offer"))?;
        let answer = self.connection.create_answer(None).await.map_err(error("answer"))?;
        let sdp = answer.sdp.clone();
        self.connection
            .set_local_description(answer)
            .await
            .map_err(error("answer"))?;
        Ok(sdp)
    }

    /// Applies the server's answer to our offer.
    pub async fn accept_answer(&self, answer_sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned()).map_err(error("answer"))?;
        self.connection
            .set_remote_description(answer)
            .await
            .map_err(error("answer"))
    }

    async fn local_description(&self, gather_timeout: Duration) -> Result<String> {
        let mut gathered = self.gathered.clone();
        let _ = tokio::time::timeout(gather_timeout, gathered.wait_for(|done| *done)).await;
        self.connection
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| Error::Input("no local description".into()))
    }

    pub async fn add_candidate(&self, candidate: IceCandidate) -> Result<()> {
        self.connection
            .add_ice_candidate(candidate.into())
            .await
            .map_err(error("candidate"))
    }

    /// Waits until connected (or `timeout`); false if it failed or timed out.
    pub async fn connected(&self, timeout: Duration) -> bool {
        let mut state = self.state.clone();
        matches!(
            tokio::time::timeout(
                timeout,
                state.wait_for(|s| matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                ))
            )
            .await,
            Ok(Ok(state)) if *state == RTCPeerConnectionState::Connected
        )
    }

    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.frames.lock().expect("not poisoned").clone()
    }

    /// Frames received so far, without copying them.
    /// Asks for a keyframe on each video track received so far (a PLI, as a decoder that cannot
    /// go on does). False when no video has come yet.
    pub async fn request_keyframe(&self) -> Result<bool> {
        let tracks = self.video.lock().expect("not poisoned").clone();
        for (track, ssrc) in &tracks {
            let request = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: *ssrc,
            };
            track
                .write_rtcp(vec![Box::new(request)])
                .await
                .map_err(error("keyframe request"))?;
        }
        Ok(!tracks.is_empty())
    }

    pub fn frame_count(&self) -> usize {
        self.frames.lock().expect("not poisoned").len()
    }

    /// Packets that arrived after a later one of their stream (sent again on a NACK, or
    /// reordered), put back in their place.
    pub fn late_packets(&self) -> u64 {
        self.counts.late.load(Ordering::Relaxed)
    }

    /// Frames given up: a gap in them not repaired within the wait.
    pub fn frames_given_up(&self) -> u64 {
        self.counts.frames_given_up.load(Ordering::Relaxed)
    }

    /// What a viewer of the video received would have seen: see [`VideoSeen`].
    pub fn video_playback(&self) -> VideoSeen {
        VideoSeen::of(&self.frames.lock().expect("not poisoned"))
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.connection.close()).await;
    }
}
