//! A DTLS server whose flight is lost sends it again while the client repeats its own, with the fix
//! carried in `crates/patched/rtc-dtls`.
//!
//! Answering a WHEP offer, the server is the DTLS server. When its flight 4 (ServerHello to
//! ServerHelloDone) is lost, the client's retransmit timer fires first (it sent its flight
//! earlier) and its repeated flight 3 reaches the server before the server's own timer fires.
//! Upstream cleared that timer on any handshake packet, so the server's flight never went again and
//! the handshake stalled until the client gave up; a browser at 15% loss met this in 6 of 15
//! playbacks.
//!
//! The peers talk through a simulated link with a one-way delay, on a virtual clock: the order of
//! the two timers is the test's, not the machine's.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::sansio::Protocol;
use support::sansio::{connected, negotiate, peer, receive, video_track};

const SERVER: &str = "127.0.0.1:42000";
const VIEWER: &str = "127.0.0.1:52000";
const ONE_WAY: Duration = Duration::from_millis(25);

const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const DTLS_RECORD_HEADER: usize = 13;

/// The handshake message type of a datagram that opens with a plaintext DTLS handshake record.
fn handshake_type(datagram: &[u8]) -> Option<u8> {
    (datagram.len() > DTLS_RECORD_HEADER && datagram[0] == CONTENT_HANDSHAKE).then(|| datagram[DTLS_RECORD_HEADER])
}

/// Datagrams on their way one direction, each with its arrival time.
#[derive(Default)]
struct Direction {
    in_flight: VecDeque<(Instant, Vec<u8>)>,
}

impl Direction {
    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }

    fn arrive(&mut self, now: Instant, to: &mut RTCPeerConnection, to_address: &str, from_address: &str) {
        while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            let (_, datagram) = self.in_flight.pop_front().unwrap();
            receive(
                to,
                now,
                to_address.parse().unwrap(),
                from_address.parse().unwrap(),
                &datagram,
            );
        }
    }
}

#[test]
fn a_lost_server_flight_goes_again_while_the_client_repeats_its_own() {
    let start = Instant::now();
    let mut server = peer(SERVER, RTCDtlsRole::Server, start);
    let mut viewer = peer(VIEWER, RTCDtlsRole::Client, start);
    server.add_track(video_track(0x5eed)).unwrap();
    negotiate(&mut server, &mut viewer, start);

    let mut to_viewer = Direction::default();
    let mut to_server = Direction::default();
    let mut server_flight_lost = false;
    let mut client_hellos_after_loss = 0;
    let (mut server_connected, mut viewer_connected) = (None, None);
    let deadline = start + Duration::from_secs(20);
    let mut now = start;
    let mut errors = Vec::new();
    for _ in 0..100_000 {
        // The server's first flight 4, every datagram of its burst, is lost.
        let mut losing = false;
        while let Some(datagram) = server.poll_write() {
            let bytes = datagram.message.to_vec();
            if !server_flight_lost && handshake_type(&bytes) == Some(SERVER_HELLO) {
                losing = true;
            }
            if !losing {
                to_viewer.in_flight.push_back((now + ONE_WAY, bytes));
            }
        }
        server_flight_lost |= losing;
        while let Some(datagram) = viewer.poll_write() {
            let bytes = datagram.message.to_vec();
            if server_flight_lost && server_connected.is_none() && handshake_type(&bytes) == Some(CLIENT_HELLO) {
                client_hellos_after_loss += 1;
            }
            to_server.in_flight.push_back((now + ONE_WAY, bytes));
        }
        if connected(&mut server) {
            server_connected.get_or_insert(now - start);
        }
        if connected(&mut viewer) {
            viewer_connected.get_or_insert(now - start);
        }
        if server_connected.is_some() && viewer_connected.is_some() {
            break;
        }

        let next = [
            to_viewer.next_arrival(),
            to_server.next_arrival(),
            server.poll_timeout(),
            viewer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next > deadline {
            break;
        }
        now = now.max(next);
        to_viewer.arrive(now, &mut viewer, VIEWER, SERVER);
        to_server.arrive(now, &mut server, SERVER, VIEWER);
        for (name, connection) in [("viewer", &mut viewer), ("server", &mut server)] {
            if connection.poll_timeout().is_some_and(|due| due <= now)
                && let Err(error) = connection.handle_timeout(now)
            {
                errors.push(format!("{name} at {:?}: {error}", now - start));
            }
        }
    }

    assert!(server_flight_lost, "the server's flight 4 was sent and lost");
    assert!(
        client_hellos_after_loss >= 1,
        "the viewer repeated its flight while the server waited"
    );
    let server_connected = server_connected.expect("the server's handshake completed");
    let viewer_connected = viewer_connected.expect("the viewer's handshake completed");
    assert!(errors.is_empty(), "timers failed: {errors:?}");
    // One retransmit interval (1 s) after the loss, not the viewer's giving up.
    assert!(
        server_connected.max(viewer_connected) < Duration::from_secs(3),
        "connected at {server_connected:?} / {viewer_connected:?}"
    );
}
