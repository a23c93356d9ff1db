//! ICE as the server runs it when it answers a browser's offer (WHEP): the controlled side. A
//! browser nominates a pair with its very first check, before the server's own check of that
//! pair has succeeded. The check must be answered at once and the pair selected, or the browser
//! waits a check interval for its next one and its first DTLS flight is dropped (the fix carried
//! in `crates/patched/rtc-ice`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::ice::attributes::control::AttrControlling;
use rtc::ice::attributes::priority::PriorityAttr;
use rtc::ice::attributes::use_candidate::UseCandidateAttr;
use rtc::ice::candidate::CandidateConfig;
use rtc::ice::candidate::candidate_host::CandidateHostConfig;
use rtc::ice::{Agent, AgentConfig};
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, CLASS_SUCCESS_RESPONSE, Message, TransactionId};
use rtc::stun::textattrs::Username;

const SERVER: &str = "127.0.0.1:40000";
const BROWSER: &str = "127.0.0.1:50000";

fn controlled_server(now: Instant) -> Agent {
    let provider = rtc::crypto::default_provider().unwrap();
    let mut agent = Agent::new(now, Arc::new(AgentConfig::default()), provider).unwrap();
    let server: SocketAddr = SERVER.parse().unwrap();
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: server.ip().to_string(),
            port: server.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    agent.add_local_candidate(host).unwrap();
    agent
        .start_connectivity_checks(now, false, "brwsr".into(), "browser-password-of-24-chars".into())
        .unwrap();
    while agent.poll_write().is_some() {}
    while agent.poll_event().is_some() {}
    agent
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
    let mut server = controlled_server(now);
    let check = nominating_check(&server);
    let browser: SocketAddr = BROWSER.parse().unwrap();
    server
        .handle_read(TransportMessage {
            now,
            transport: TransportContext {
                local_addr: SERVER.parse().unwrap(),
                peer_addr: browser,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(&check.raw[..]),
        })
        .unwrap();

    let mut answered = false;
    let mut checked_back = false;
    while let Some(sent) = server.poll_write() {
        assert_eq!(sent.transport.peer_addr, browser);
        let mut message = Message {
            raw: sent.message.to_vec(),
            ..Message::default()
        };
        message.decode().unwrap();
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
