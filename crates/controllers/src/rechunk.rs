//! Re-cutting a byte stream into pieces of a chosen size (the model yields block-sized pieces; a
//! WebSocket or SSE client asks for its own chunk size).

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use model::content::ByteStream;

/// `input` as pieces of exactly `size` bytes, the last one shorter.
pub fn rechunk(input: ByteStream, size: usize) -> impl Stream<Item = model::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(
        (input, BytesMut::new(), false),
        move |(mut input, mut pending, mut ended)| async move {
            loop {
                if pending.len() >= size {
                    let piece = pending.split_to(size).freeze();
                    return Some((Ok(piece), (input, pending, ended)));
                }
                if ended {
                    if pending.is_empty() {
                        return None;
                    }
                    let piece = pending.split().freeze();
                    return Some((Ok(piece), (input, pending, ended)));
                }
                match input.next().await {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        ended = true;
                        pending.clear();
                        return Some((Err(e), (input, pending, ended)));
                    }
                    None => ended = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn pieces_have_the_asked_size_whatever_comes_in() {
        let input = futures::stream::iter([&b"abc"[..], b"defghij", b"", b"k"].map(|p| Ok(Bytes::copy_from_slice(p))));
        let out: Vec<Bytes> = rechunk(input.boxed(), 4).try_collect().await.unwrap();
        assert_eq!(out, [&b"abcd"[..], b"efgh", b"ijk"]);
    }
}
