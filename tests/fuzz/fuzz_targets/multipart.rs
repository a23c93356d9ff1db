//! A multipart/form-data upload from a stranger (`POST /api/v1/content`): the input's first line is
//! the Content-Type (boundary included), the rest the body, delivered in pieces whose size the
//! second byte picks; read by actix-multipart and the server's pump into an upload's byte stream,
//! drained as an import would drain it.
#![no_main]
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (content_type, rest) = (&data[..newline], &data[newline + 1..]);
    let Ok(content_type) = HeaderValue::from_bytes(content_type) else {
        return;
    };
    let Some((&piece, body)) = rest.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, content_type);
    let pieces: Vec<Result<Bytes, actix_web::error::PayloadError>> = body
        .chunks(usize::from(piece).max(1))
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let multipart = actix_multipart::Multipart::new(&headers, futures::stream::iter(pieces));
    let buffers = controllers::upload::UploadBuffers::new(1 << 16, 1 << 20);
    let (sender, stream) = controllers::upload::channel(&buffers);
    runtime().block_on(async move {
        let pump = controllers::upload::pump_first_file(multipart, sender, 1 << 20, Duration::from_secs(1));
        let drain = stream.for_each(|_| async {});
        futures::join!(pump, drain);
    });
});
