//! The Range header of a gateway request, against a content size taken from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str)| {
    let (size, header) = input;
    let _ = controllers::range::parse(Some(header), size % (1 << 40));
});
