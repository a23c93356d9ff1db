//! An SDP offer from a stranger (a WHEP POST, or an `answer` on the signaling socket): the server's
//! own reading of its ICE username fragment, the SDP parser, and a sans-IO peer of the WebRTC stack
//! the server runs taking it as its remote description and answering it (media sections, codecs,
//! ICE and DTLS details, candidates in the offer), all before a packet is sent.
#![no_main]
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::sdp::RTCSessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let _ = model::webrtc::ice_ufrag(sdp);
    let Ok(offer) = RTCSessionDescription::offer(sdp.to_owned()) else {
        return;
    };
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("the default codecs register");
    let Ok(mut peer) = RTCPeerConnectionBuilder::new()
        .with_media_engine(media)
        .build(Instant::now())
    else {
        return;
    };
    if peer.set_remote_description(Instant::now(), offer).is_ok() {
        let _ = peer.create_answer(None);
    }
});
