//! Sans-IO peer connections for tests that need exact bursts, losses or timings: each test moves
//! the datagrams between two peers itself.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{RTCDtlsRole, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A peer with VP8 and one host candidate at `address`; `answering_role` is its DTLS role when it
/// answers.
pub fn peer(address: &str, answering_role: RTCDtlsRole, now: Instant) -> RTCPeerConnection {
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
        .build(now)
        .unwrap();
    let candidate = super::host_candidate(address);
    connection
        .add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
        .unwrap();
    connection
}

/// A VP8 video track sent with `ssrc`.
pub fn video_track(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "stream".into(),
        "video".into(),
        "video".into(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: vp8(),
            ..Default::default()
        }],
    )
}

/// Offer from `offerer`, answer from `answerer`, both applied.
pub fn negotiate(offerer: &mut RTCPeerConnection, answerer: &mut RTCPeerConnection, now: Instant) {
    let offer = offerer.create_offer(None).unwrap();
    offerer.set_local_description(now, offer.clone()).unwrap();
    answerer.set_remote_description(now, offer).unwrap();
    let answer = answerer.create_answer(None).unwrap();
    answerer.set_local_description(now, answer.clone()).unwrap();
    offerer.set_remote_description(now, answer).unwrap();
}

/// Whether the connection reported itself connected among the events it had pending.
pub fn connected(connection: &mut RTCPeerConnection) -> bool {
    let mut connected = false;
    while let Some(event) = connection.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) = event {
            connected = true;
        }
    }
    connected
}

/// Hands `connection` (at `local`) a UDP datagram from `peer` at `now`.
pub fn receive(connection: &mut RTCPeerConnection, now: Instant, local: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
    connection
        .handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: peer,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        })
        .unwrap();
}
