//! SRTP that arrives together with the DTLS handshake's last flight, with the fix carried in
//! `crates/patched/rtc`.
//!
//! Answering a WHEP offer, the server is the DTLS server: its handshake completes first, and it
//! sends the viewer's opening keyframe at once, right behind its last handshake flight. A client
//! that reads both in one burst, as the webrtc-rs driver does, must have its SRTP keys in place
//! before it reads the keyframe. Upstream installed them only when the client next polled its
//! events, and dropped the packets of that burst.
//!
//! The two peers here talk through queues, so the burst is exact rather than a matter of timing.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{RTCDtlsRole, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

const SENDER: &str = "127.0.0.1:41000";
const RECEIVER: &str = "127.0.0.1:51000";
const SSRC: u32 = 0x5eed;

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn peer(address: &str, answering_role: RTCDtlsRole) -> RTCPeerConnection {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8(),
                payload_type: 96,
            },
            RtpCodecKind::Video,
        )
        .unwrap();
    let mut connection = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_answering_dtls_role(answering_role)
                .build(),
        )
        .with_media_engine(media)
        .build(Instant::now())
        .unwrap();
    let candidate = support::host_candidate(address);
    connection
        .add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
        .unwrap();
    connection
}

/// Hands every datagram `from` has to send to `to`, all read before `to` polls anything.
fn deliver(from: &mut RTCPeerConnection, to: &mut RTCPeerConnection, to_address: &str) -> usize {
    let mut burst = VecDeque::new();
    while let Some(datagram) = from.poll_write() {
        burst.push_back(datagram);
    }
    let delivered = burst.len();
    for datagram in burst {
        to.handle_read(TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: to_address.parse().unwrap(),
                peer_addr: datagram.transport.local_addr,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(&datagram.message[..]),
        })
        .unwrap();
    }
    delivered
}

fn connected(connection: &mut RTCPeerConnection) -> bool {
    let mut connected = false;
    while let Some(event) = connection.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) = event {
            connected = true;
        }
    }
    connected
}

#[test]
fn media_sent_right_behind_the_last_handshake_flight_is_received() {
    // The sender offers and takes the DTLS server's part, as the server does for a WHEP viewer.
    let mut sender = peer(SENDER, RTCDtlsRole::Server);
    let mut receiver = peer(RECEIVER, RTCDtlsRole::Client);
    let track = sender
        .add_track(MediaStreamTrack::new(
            "stream".into(),
            "video".into(),
            "video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(SSRC),
                    ..Default::default()
                },
                codec: vp8(),
                ..Default::default()
            }],
        ))
        .unwrap();
    let offer = sender.create_offer(None).unwrap();
    sender.set_local_description(Instant::now(), offer.clone()).unwrap();
    receiver.set_remote_description(Instant::now(), offer).unwrap();
    let answer = receiver.create_answer(None).unwrap();
    receiver.set_local_description(Instant::now(), answer.clone()).unwrap();
    sender.set_remote_description(Instant::now(), answer).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = false;
    let mut received = Vec::new();
    while Instant::now() < deadline {
        deliver(&mut receiver, &mut sender, SENDER);
        if connected(&mut sender) && !sent {
            // The sender's handshake is complete: the opening frame goes at once, queued right
            // behind the handshake's last flight.
            let mut rtp_sender = sender.rtp_sender(track).unwrap();
            let payload_type = rtp_sender.get_parameters().rtp_parameters.codecs[0].payload_type;
            rtp_sender
                .write_rtp(
                    Instant::now(),
                    rtp::packet::Packet {
                        header: rtp::header::Header {
                            version: 2,
                            payload_type,
                            sequence_number: 1,
                            timestamp: 90_000,
                            ssrc: SSRC,
                            marker: true,
                            ..Default::default()
                        },
                        payload: Bytes::from_static(&[0x10, 0x00, 0x9d, 0x01, 0x2a]),
                    },
                )
                .unwrap();
            sent = true;
        }
        deliver(&mut sender, &mut receiver, RECEIVER);
        let _ = connected(&mut receiver);
        while let Some(message) = receiver.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message.message {
                received.push(packet.header.sequence_number);
            }
        }
        if sent {
            // Nothing resends a dropped RTP packet: the burst is the test.
            break;
        }
        let now = Instant::now();
        for connection in [&mut sender, &mut receiver] {
            if connection.poll_timeout().is_some_and(|due| due <= now) {
                connection.handle_timeout(now).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sent, "the sender's handshake completed");
    assert_eq!(
        received,
        vec![1],
        "the opening packet, sent behind the last handshake flight, arrived"
    );
}
