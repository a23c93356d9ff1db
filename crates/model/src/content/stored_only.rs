//! Answering from the store alone. A peer instance asks for content with `Cache-Control:
//! only-if-cached`: it wants what this instance stores, not what this instance could fetch. Were
//! the request to reach the upstreams, instances that list each other would ask around the ring
//! for a CID none of them has, until the timeout.
//!
//! The mark travels with the work, as a task-local value, so that every read under it (the
//! request's handler and, polled through [`stored_only_stream`], its body) finds the upstreams out
//! of reach: a block the store lacks is `NotFound`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::store::ByteStream;
use crate::error::Result;

tokio::task_local! {
    static STORED_ONLY: ();
}

/// Runs `work` with the upstreams out of reach.
pub async fn stored_only<F: Future>(work: F) -> F::Output {
    STORED_ONLY.scope((), work).await
}

/// `body`, each poll of it with the upstreams out of reach.
pub fn stored_only_stream(body: ByteStream) -> ByteStream {
    Box::pin(StoredOnly(body))
}

/// Whether the work at hand may fetch from upstreams.
pub(crate) fn upstreams_allowed() -> bool {
    STORED_ONLY.try_with(|_| ()).is_err()
}

struct StoredOnly(ByteStream);

impl Stream for StoredOnly {
    type Item = Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        STORED_ONLY.sync_scope((), || self.0.as_mut().poll_next(cx))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn the_mark_holds_in_the_work_and_in_each_poll_of_its_body() {
        assert!(upstreams_allowed());
        assert!(!stored_only(async { upstreams_allowed() }).await);
        let body: ByteStream = futures::stream::poll_fn(|_| {
            Poll::Ready(Some(Ok(bytes::Bytes::from(vec![u8::from(upstreams_allowed())]))))
        })
        .boxed();
        let mut marked = stored_only_stream(body);
        assert_eq!(marked.next().await.unwrap().unwrap()[0], 0);
        assert!(upstreams_allowed(), "outside the work, nothing changed");
    }
}
