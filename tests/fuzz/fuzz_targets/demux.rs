//! Media files from strangers: MP4, WebM, IVF, Ogg and Annex-B H.264, picked by their first bytes
//! as the server picks them, read to their last frame (or the first 10000).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let size = data.len() as u64;
    let Ok(mut demuxer) = model::media::open(Box::new(std::io::Cursor::new(data.to_vec())), size) else {
        return;
    };
    let _ = demuxer.tracks().len();
    for _ in 0..10_000 {
        match demuxer.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
