//! A trickle-ICE fragment from a stranger (`PATCH /whep/sessions/{id}`, RFC 8840): the server's
//! parser of the fragment, then each candidate line as the WebRTC stack reads it when it is added.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fragment) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(candidates) = controllers::whep::parse_sdpfrag(fragment) else {
        return;
    };
    for candidate in candidates {
        let value = candidate
            .candidate
            .strip_prefix("candidate:")
            .unwrap_or(&candidate.candidate);
        if !value.is_empty() {
            let _ = rtc::ice::candidate::unmarshal_candidate(value);
        }
    }
});
