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

use bytes::Bytes;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp;
use rtc::sansio::Protocol;
use support::sansio::{connected, negotiate, peer, receive, video_track};

const SENDER: &str = "127.0.0.1:41000";
const RECEIVER: &str = "127.0.0.1:51000";
const SSRC: u32 = 0x5eed;

/// Hands every datagram `from` has to send to `to`, all read before `to` polls anything.
fn deliver(from: &mut RTCPeerConnection, to: &mut RTCPeerConnection, to_address: &str) -> usize {
    let mut burst = VecDeque::new();
    while let Some(datagram) = from.poll_write() {
        burst.push_back(datagram);
    }
    let delivered = burst.len();
    for datagram in burst {
        receive(
            to,
            Instant::now(),
            to_address.parse().unwrap(),
            datagram.transport.local_addr,
            &datagram.message,
        );
    }
    delivered
}

#[test]
fn media_sent_right_behind_the_last_handshake_flight_is_received() {
    // The sender offers and takes the DTLS server's part, as the server does for a WHEP viewer.
    let mut sender = peer(SENDER, RTCDtlsRole::Server, Instant::now());
    let mut receiver = peer(RECEIVER, RTCDtlsRole::Client, Instant::now());
    let track = sender.add_track(video_track(SSRC)).unwrap();
    negotiate(&mut sender, &mut receiver, Instant::now());

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
