//! A server peer playing a stored VP8 file to a real webrtc-rs client on loopback: SDP offer and
//! answer, trickled candidates, RTP received, frames counted, keyframe first, timestamps paced.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use model::media::playback::{BufferSettings, Playback};
use model::webrtc::{Peer, PeerConfig, PeerEvent};
use rtc::interceptor::Registry;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder, register_default_interceptors,
};

/// (RTP timestamp, whether the frame is a VP8 keyframe) per frame received.
type Received = Arc<Mutex<Vec<(u32, bool)>>>;

struct Client {
    candidates: mpsc::Sender<RTCIceCandidateInit>,
    frames: Received,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Client {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.candidates.try_send(candidate);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let frames = self.frames.clone();
        tokio::spawn(async move {
            let mut depacketizer = Vp8Packet::default();
            let mut frame: Option<(u32, Vec<u8>)> = None;
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                let Ok(payload) = depacketizer.depacketize(&packet.payload) else {
                    continue;
                };
                let (_, data) = frame.get_or_insert_with(|| (packet.header.timestamp, Vec::new()));
                data.extend_from_slice(&payload);
                if packet.header.marker {
                    let (timestamp, data) = frame.take().expect("a frame in progress");
                    // VP8 frame tag: bit 0 is 0 on key frames.
                    let keyframe = data.first().is_some_and(|b| b & 1 == 0);
                    frames.lock().unwrap().push((timestamp, keyframe));
                }
            }
        });
    }
}

fn vp8_playback() -> Arc<Playback> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/media/vp8.ivf");
    let bytes = std::fs::read(path).unwrap();
    let size = bytes.len() as u64;
    let demuxer = model::media::open(Box::new(Cursor::new(Bytes::from(bytes))), size).unwrap();
    Playback::start(demuxer, BufferSettings::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_rs_client_receives_the_frames_paced_from_a_keyframe() {
    let playback = vp8_playback();
    let (peer, offer, mut server_events) = Peer::offer(&playback, &PeerConfig::default()).await.unwrap();
    assert!(offer.contains("VP8"), "{offer}");

    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let (candidates_out, mut client_candidates) = mpsc::channel(64);
    let frames: Received = Arc::default();
    let client = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_handler(Arc::new(Client {
            candidates: candidates_out,
            frames: frames.clone(),
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    let client: Arc<dyn PeerConnection> = Arc::new(client);
    client
        .set_remote_description(RTCSessionDescription::offer(offer).unwrap())
        .await
        .unwrap();
    let answer = client.create_answer(None).await.unwrap();
    client.set_local_description(answer.clone()).await.unwrap();
    peer.answer(&answer.sdp).await.unwrap();

    // Trickle ICE both ways.
    let to_client = client.clone();
    let server_side = tokio::spawn(async move {
        while let Some(event) = server_events.recv().await {
            if let PeerEvent::Candidate(candidate) = event {
                let _ = to_client.add_ice_candidate(candidate).await;
            }
        }
    });
    let to_server = peer.clone();
    let client_side = tokio::spawn(async move {
        while let Some(candidate) = client_candidates.recv().await {
            let _ = to_server.add_candidate(candidate).await;
        }
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    while !playback.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(peer.is_connected());
    assert!(peer.bandwidth_estimate() > 0.0);
    let received = frames.lock().unwrap().clone();
    // The client gets every frame from the keyframe at or after it joined (the file has keyframes
    // at 0 s and 1 s, 15 frames apart) to the end.
    let keyframes = received.iter().filter(|(_, key)| *key).count();
    assert!(received[0].1, "the first frame is a keyframe: {received:?}");
    assert!(keyframes == 1 || keyframes == 2, "{received:?}");
    assert_eq!(received.len(), 15 * keyframes, "{received:?}");
    for pair in received.windows(2) {
        // 15 fps on the 90 kHz clock (durations in nanoseconds round down by a tick at most).
        let step = pair[1].0.wrapping_sub(pair[0].0);
        assert!((5999..=6001).contains(&step), "{received:?}");
    }
    peer.close().await;
    client.close().await.unwrap();
    server_side.abort();
    client_side.abort();
}
