//! A CID (or a gateway path's first segment) from a URL.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(cid) = model::content::parse_cid(input) {
        let _ = model::content::block::check_supported(&cid);
        let _ = cid.to_string();
    }
});
