//! Byte streams that record themselves: when one ends (completed, failed, or dropped because the
//! client went away) a [`StreamRecord`] goes to the metrics recorder, which never blocks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::HttpRequest;
use bytes::Bytes;
use futures::Stream;
use model::content::ByteStream;
use model::monitoring::LiveStats;
use model::notifications::{Event, NotificationType, Notifier, emit};
use model::stream_records::{Direction, Outcome, StreamMetrics, StreamType};
use model::stream_session::{StreamOpening, StreamSession};

use crate::AppState;

/// What a metered stream is, before it has counted anything.
#[derive(Clone)]
pub struct Meter {
    pub metrics: Arc<dyn StreamMetrics>,
    /// Told of streams that ended: `content_retrieved` for downloads, `system_error` for failures.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Off, the meter passes streams through untouched and records nothing.
    pub enabled: bool,
    /// Prometheus counters of streams and their bytes.
    pub prometheus_metrics: Option<Arc<crate::prometheus_metrics::PrometheusMetrics>>,
    /// The live counters the sampler reads.
    pub live: Option<Arc<LiveStats>>,
    pub stream_type: StreamType,
    pub direction: Direction,
    pub path: String,
    pub chunk_size: u64,
    pub correlation_id: String,
}

impl Meter {
    /// A meter for a request: its correlation id is the client's `X-Request-Id`, or a new one.
    pub fn for_request(
        req: &HttpRequest,
        state: &AppState,
        stream_type: StreamType,
        direction: Direction,
        path: String,
    ) -> Self {
        Self {
            metrics: state.metrics.clone(),
            notifier: Some(state.notifier.clone()),
            enabled: state.limits.record_streams,
            prometheus_metrics: Some(state.prometheus_metrics.clone()),
            live: Some(state.live.clone()),
            stream_type,
            direction,
            path,
            chunk_size: 0,
            correlation_id: correlation_id(req),
        }
    }

    /// Counts `inner` and records the stream when it ends.
    pub fn wrap(self, inner: ByteStream) -> ByteStream {
        if !self.enabled {
            return inner;
        }
        Box::pin(MeteredStream {
            inner,
            tally: Tally::start(self),
        })
    }
}

/// The client's `X-Request-Id`, or a fresh UUID.
pub fn correlation_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// What a stream's path streams: the CID of `/ipfs/{cid}/...`, `/ws/stream/{cid}/...` or
/// `/sse/stream/{cid}/...`, else the path itself.
fn content_of(path: &str) -> &str {
    ["/ipfs/", "/ws/stream/", "/sse/stream/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .map_or(path, |rest| rest.split(['/', '?']).next().unwrap_or(rest))
}

/// Counts a stream as it goes and records it once, when told how it ended or when dropped: the
/// model's [`StreamSession`] (live counters, the record), with this server's Prometheus counters
/// and the `content_retrieved`/`system_error` events around it.
pub struct Tally {
    session: StreamSession,
    prometheus_metrics: Option<Arc<crate::prometheus_metrics::PrometheusMetrics>>,
    notifier: Option<Arc<dyn Notifier>>,
}

impl Tally {
    pub fn start(meter: Meter) -> Self {
        if let Some(prometheus_metrics) = &meter.prometheus_metrics {
            prometheus_metrics.stream_started(meter.stream_type, meter.direction);
        }
        let opening = StreamOpening {
            stream_type: meter.stream_type,
            direction: meter.direction,
            content: content_of(&meter.path).to_owned(),
            path: meter.path,
            chunk_size: meter.chunk_size,
            correlation_id: meter.correlation_id,
        };
        let recorder = meter.enabled.then_some(meter.metrics);
        Self {
            session: StreamSession::open(opening, meter.live.as_ref(), recorder),
            prometheus_metrics: meter.prometheus_metrics,
            notifier: meter.notifier,
        }
    }

    pub fn count(&mut self, bytes: usize) {
        self.session.count(bytes as u64);
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.session.bytes()
    }

    /// Chunks counted so far.
    pub fn chunks(&self) -> u64 {
        self.session.chunks()
    }

    /// Records the stream with its outcome (once; later calls do nothing).
    pub fn finish(&mut self, outcome: Outcome) {
        if self.session.has_ended() {
            return;
        }
        if let Some(prometheus_metrics) = &self.prometheus_metrics {
            prometheus_metrics.stream_ended(
                self.session.stream_type(),
                self.session.direction(),
                outcome,
                self.session.bytes(),
            );
        }
        let notifier = self.notifier.as_deref();
        self.session.end(outcome, |record| {
            let kind = match (outcome, record.direction) {
                (Outcome::Ok, Direction::Outbound) => NotificationType::ContentRetrieved,
                (Outcome::Error, _) => NotificationType::SystemError,
                _ => return,
            };
            let Some(notifier) = notifier else { return };
            let event = Event::StreamEnded {
                kind,
                source: record.stream_type.as_str(),
                path: record.path,
                bytes: record.bytes,
                stream_type: record.stream_type.as_str(),
                direction: record.direction.as_str(),
                outcome: outcome.as_str(),
                correlation_id: record.correlation_id,
            };
            emit(notifier, event);
        });
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.finish(Outcome::Aborted);
    }
}

/// The outcome a stream error stands for: the client's doing (its input failing, or too large) is an
/// abort; the rest are the server's errors.
pub fn outcome_of(error: &model::Error) -> Outcome {
    match error {
        model::Error::Input(_) | model::Error::InputStalled(_) | model::Error::TooLarge { .. } => Outcome::Aborted,
        _ => Outcome::Error,
    }
}

struct MeteredStream {
    inner: ByteStream,
    tally: Tally,
}

impl Stream for MeteredStream {
    type Item = model::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(bytes))) => self.tally.count(bytes.len()),
            Poll::Ready(Some(Err(e))) => {
                let outcome = outcome_of(e);
                self.tally.finish(outcome);
            }
            Poll::Ready(None) => self.tally.finish(Outcome::Ok),
            Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, stream};
    use model::stream_records::MockStreamMetrics;

    use super::*;

    fn meter(metrics: MockStreamMetrics) -> Meter {
        Meter {
            metrics: Arc::new(metrics),
            notifier: None,
            enabled: true,
            prometheus_metrics: None,
            live: None,
            stream_type: StreamType::Http,
            direction: Direction::Outbound,
            path: "/ipfs/x".into(),
            chunk_size: 0,
            correlation_id: "id".into(),
        }
    }

    #[test]
    fn the_content_of_a_stream_is_its_cid() {
        assert_eq!(content_of("/ipfs/bafyX/a/b.mp4"), "bafyX");
        assert_eq!(content_of("/ws/stream/QmY?chunk_size=5"), "QmY");
        assert_eq!(content_of("/sse/stream/QmZ"), "QmZ");
        assert_eq!(content_of("/ws/upload"), "/ws/upload");
    }

    #[tokio::test]
    async fn a_stream_records_once_with_how_it_ended() {
        let cases: Vec<(Vec<model::Result<Bytes>>, usize, Outcome, u64)> = vec![
            (
                vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"de"))],
                3,
                Outcome::Ok,
                5,
            ),
            (
                vec![Ok(Bytes::from_static(b"abc")), Err(model::Error::Store("disk".into()))],
                3,
                Outcome::Error,
                3,
            ),
            (vec![Err(model::Error::Input("reset".into()))], 3, Outcome::Aborted, 0),
            (
                vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"de"))],
                1,
                Outcome::Aborted,
                3,
            ),
        ];
        for (items, consume, outcome, bytes) in cases {
            let mut metrics = MockStreamMetrics::new();
            metrics
                .expect_record()
                .withf(move |r| r.outcome == outcome && r.bytes == bytes && r.path == "/ipfs/x")
                .times(1)
                .return_const(());
            let mut stream = meter(metrics).wrap(stream::iter(items).boxed());
            for _ in 0..consume {
                if stream.next().await.is_none() {
                    break;
                }
            }
            drop(stream);
        }
    }
}
