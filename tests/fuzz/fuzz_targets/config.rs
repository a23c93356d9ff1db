//! A config file as `serve --config` reads it: TOML, the flat keys of earlier releases moved into
//! their sections, every section's keys typed and checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ipfs_stream::config::Config::from_file_text(text);
    }
});
