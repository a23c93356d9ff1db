//! ICE as the server runs it, with the fixes carried in `crates/patched/rtc-ice`.
//!
//! - Answering a browser's offer (WHEP), the server is the controlled side. A browser nominates a
//!   pair with its very first check, before the server's own check of that pair has succeeded.
//!   The check must be answered at once and the pair selected. Otherwise the browser waits a check
//!   interval for its next one, and its first DTLS flight is dropped.
//! - Offering (the WebSocket signaling), the server is the controlling side. It nominates as soon
//!   as a check succeeds, not at its next check tick.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::ice::attributes::control::AttrControlling;
use rtc::ice::attributes::priority::PriorityAttr;
use rtc::ice::attributes::use_candidate::UseCandidateAttr;
use rtc::ice::{Agent, AgentConfig};
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, CLASS_SUCCESS_RESPONSE, Message, TransactionId};
use rtc::stun::textattrs::Username;
use rtc::stun::xoraddr::XorMappedAddress;

const SERVER: &str = "127.0.0.1:40000";
const BROWSER: &str = "127.0.0.1:50000";

const BROWSER_PASSWORD: &str = "browser-password-of-24-chars";

fn server_agent(now: Instant, controlling: bool) -> Agent {
    let provider = rtc::crypto::default_provider().unwrap();
    let mut agent = Agent::new(now, Arc::new(AgentConfig::default()), provider).unwrap();
    agent.add_local_candidate(support::host_candidate(SERVER)).unwrap();
    agent
        .start_connectivity_checks(now, controlling, "brwsr".into(), BROWSER_PASSWORD.into())
        .unwrap();
    while agent.poll_write().is_some() {}
    while agent.poll_event().is_some() {}
    agent
}

fn from_browser(now: Instant, message: &Message) -> TransportMessage<BytesMut> {
    TransportMessage {
        now,
        transport: TransportContext {
            local_addr: SERVER.parse().unwrap(),
            peer_addr: BROWSER.parse().unwrap(),
            transport_protocol: TransportProtocol::UDP,
            ecn: None,
        },
        message: BytesMut::from(&message.raw[..]),
    }
}

fn decode(raw: &[u8]) -> Message {
    let mut message = Message {
        raw: raw.to_vec(),
        ..Message::default()
    };
    message.decode().unwrap();
    message
}

/// A browser's first check: from an address the server has no candidate for yet, nominating.
fn nominating_check(server: &Agent) -> Message {
    let credentials = server.get_local_credentials().clone();
    let provider = rtc::crypto::default_provider().unwrap();
    let mut check = Message::new();
    check
        .build(&[
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(ATTR_USERNAME, format!("{}:brwsr", credentials.ufrag))),
            Box::new(UseCandidateAttr::new()),
            Box::new(AttrControlling(7)),
            Box::new(PriorityAttr(1_862_270_975)),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                credentials.pwd,
                provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])
        .unwrap();
    check
}

#[test]
fn a_check_nominating_an_unchecked_pair_is_answered_and_selects_it() {
    let now = Instant::now();
    let mut server = server_agent(now, false);
    let check = nominating_check(&server);
    let browser: SocketAddr = BROWSER.parse().unwrap();
    server.handle_read(from_browser(now, &check)).unwrap();

    let mut answered = false;
    let mut checked_back = false;
    while let Some(sent) = server.poll_write() {
        assert_eq!(sent.transport.peer_addr, browser);
        let message = decode(&sent.message);
        if message.typ.class == CLASS_SUCCESS_RESPONSE && message.transaction_id == check.transaction_id {
            answered = true;
        } else if message.typ == BINDING_REQUEST {
            checked_back = true;
        }
    }
    assert!(answered, "the nominating check is answered at once");
    assert!(checked_back, "the server still checks the pair itself");
    let (_, remote) = server.get_selected_candidate_pair().expect("the pair is selected");
    assert_eq!(remote.addr(), browser);
}

#[test]
fn a_controlling_server_nominates_as_soon_as_a_check_succeeds() {
    let start = Instant::now();
    let mut server = server_agent(start, true);
    server.add_remote_candidate(support::host_candidate(BROWSER)).unwrap();
    // The first check tick sends the checks.
    let tick = start + Duration::from_millis(1);
    server.handle_timeout(tick).unwrap();
    let check = std::iter::from_fn(|| server.poll_write())
        .map(|sent| decode(&sent.message))
        .find(|message| message.typ == BINDING_REQUEST)
        .expect("a check of the browser's candidate");
    assert!(!check.contains(ATTR_USE_CANDIDATE));

    // The browser answers; no tick runs in between.
    let provider = rtc::crypto::default_provider().unwrap();
    let browser: SocketAddr = BROWSER.parse().unwrap();
    let mut response = Message::new();
    response
        .build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(check.transaction_id),
            Box::new(XorMappedAddress {
                ip: "127.0.0.1".parse().unwrap(),
                port: 40000,
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                BROWSER_PASSWORD.into(),
                provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])
        .unwrap();
    let answered = tick + Duration::from_millis(1);
    server.handle_read(from_browser(answered, &response)).unwrap();
    let nominations = |server: &mut Agent| -> Vec<Message> {
        std::iter::from_fn(|| server.poll_write())
            .filter(|sent| sent.transport.peer_addr == browser)
            .map(|sent| decode(&sent.message))
            .filter(|message| message.typ == BINDING_REQUEST && message.contains(ATTR_USE_CANDIDATE))
            .collect()
    };
    let nomination = nominations(&mut server);
    assert_eq!(
        nomination.len(),
        1,
        "the nomination goes out with the success, not at the next tick"
    );
    // Selected at once: a browser starts DTLS as soon as it is nominated.
    let (_, remote) = server.get_selected_candidate_pair().expect("the pair is selected");
    assert_eq!(remote.addr(), browser);

    // Unanswered, the nomination is repeated at the next tick (every 200 ms once connected);
    // answered, it stops.
    let next_tick = answered + Duration::from_millis(250);
    server.handle_timeout(next_tick).unwrap();
    let repeated = nominations(&mut server);
    assert_eq!(repeated.len(), 1, "an unanswered nomination is repeated");
    let mut acknowledgement = Message::new();
    acknowledgement
        .build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(repeated[0].transaction_id),
            Box::new(XorMappedAddress {
                ip: "127.0.0.1".parse().unwrap(),
                port: 40000,
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                BROWSER_PASSWORD.into(),
                provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])
        .unwrap();
    server
        .handle_read(from_browser(next_tick + Duration::from_millis(1), &acknowledgement))
        .unwrap();
    server.handle_timeout(next_tick + Duration::from_millis(250)).unwrap();
    assert!(
        nominations(&mut server).is_empty(),
        "an answered nomination is not repeated"
    );
}
