//! Helpers shared by the model's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use futures::{StreamExt, TryStreamExt, stream};
use model::content::{AddRequest, ByteStream, ContentNode, ImportOptions, MemoryBlockStore, MemoryContentRepository};
use sha2::{Digest, Sha256};

/// A content node over in-memory adapters, and its block store (to corrupt it).
pub fn node() -> (ContentNode, MemoryBlockStore) {
    let store = MemoryBlockStore::new();
    let node = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()));
    (node, store)
}

/// Kubo's deterministic test bytes: the ChaCha20 keystream under sha256(seed), zero nonce.
pub fn kubo_bytes(seed: &str, len: usize) -> Vec<u8> {
    let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let mut cipher = ChaCha20::new(&key.into(), &[0u8; 12].into());
    let mut out = vec![0u8; len];
    cipher.apply_keystream(&mut out);
    out
}

/// `data` as a stream of pieces of `piece` bytes (to exercise the chunker's joins).
pub fn pieces(data: Vec<u8>, piece: usize) -> ByteStream {
    let data = Bytes::from(data);
    let count = data.len().div_ceil(piece.max(1));
    stream::iter((0..count).map(move |i| Ok(data.slice(i * piece..((i + 1) * piece).min(data.len()))))).boxed()
}

pub fn add_request(options: ImportOptions) -> AddRequest {
    AddRequest {
        options,
        pin: true,
        ..Default::default()
    }
}

pub async fn collect(stream: ByteStream) -> model::Result<Vec<u8>> {
    let parts: Vec<Bytes> = stream.try_collect().await?;
    Ok(parts.concat())
}

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
}

pub fn file_stream(path: &str) -> ByteStream {
    let bytes = std::fs::read(fixture(path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    pieces(bytes, 4096)
}

/// A host ICE candidate at `address` (UDP, component 1).
pub fn host_candidate(address: &str) -> rtc::ice::candidate::Candidate {
    let address: std::net::SocketAddr = address.parse().unwrap();
    rtc::ice::candidate::candidate_host::CandidateHostConfig {
        base_config: rtc::ice::candidate::CandidateConfig {
            network: "udp".into(),
            address: address.ip().to_string(),
            port: address.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap()
}

// The WebRTC hub fixture records notifications through the model's mocks.
#[cfg(feature = "mock")]
pub mod loopback;
pub mod sansio;
