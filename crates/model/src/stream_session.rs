//! One stream's accounting from open to end, the same for every face: an HTTP body, a WebSocket
//! or SSE transfer, a WebRTC connection. While open it counts into the live counters (what the
//! sampler and "active content" read); at its end, once, it closes there (as failed on a server
//! error) and, when streams are recorded, becomes a [`StreamRecord`].

use std::sync::Arc;
use std::time::Instant;

use crate::clock::now_ms;
use crate::monitoring::{LiveStats, LiveStream};
use crate::stream_records::{Direction, Outcome, StreamMetrics, StreamRecord, StreamType};

/// What a stream is, as it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamOpening {
    pub stream_type: StreamType,
    pub direction: Direction,
    /// The CID or content path streamed, as recorded.
    pub path: String,
    /// What the live counters list it under (the CID alone).
    pub content: String,
    /// The chunk size asked for (0 when the transport chose).
    pub chunk_size: u64,
    /// Ties the record to the request (or connection) that made it.
    pub correlation_id: String,
}

/// An open stream's accounting; see the module's text.
pub struct StreamSession {
    opening: StreamOpening,
    live: Option<LiveStream>,
    /// Where the record goes; none when streams are not recorded.
    recorder: Option<Arc<dyn StreamMetrics>>,
    started: Instant,
    started_at_ms: i64,
    bytes: u64,
    chunks: u64,
    ended: bool,
}

impl StreamSession {
    /// Opens a stream in `live` (when given), to be recorded by `recorder` (when given).
    pub fn open(
        opening: StreamOpening,
        live: Option<&Arc<LiveStats>>,
        recorder: Option<Arc<dyn StreamMetrics>>,
    ) -> Self {
        let started_at_ms = now_ms();
        let live = live.map(|live| {
            live.open_stream(
                opening.content.clone(),
                opening.stream_type,
                opening.direction,
                started_at_ms,
            )
        });
        Self {
            opening,
            live,
            recorder,
            started: Instant::now(),
            started_at_ms,
            bytes: 0,
            chunks: 0,
            ended: false,
        }
    }

    /// One chunk (or frame) of `bytes` went through.
    pub fn count(&mut self, bytes: u64) {
        if self.ended {
            return;
        }
        if let Some(live) = &self.live {
            live.count(bytes);
        }
        self.bytes += bytes;
        self.chunks += 1;
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Chunks (or frames) counted so far.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    pub fn stream_type(&self) -> StreamType {
        self.opening.stream_type
    }

    pub fn direction(&self) -> Direction {
        self.opening.direction
    }

    /// Whether [`StreamSession::end`] was called.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Ends the stream with `outcome` (once; later calls do nothing). Once recorded, the record
    /// goes to `announce` (which may keep its strings); it is called only when the stream is
    /// recorded.
    pub fn end(&mut self, outcome: Outcome, announce: impl FnOnce(StreamRecord)) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        // Dropping the handle closes the live stream; a server-side failure is counted first.
        if let Some(mut live) = self.live.take()
            && outcome == Outcome::Error
        {
            live.fail();
        }
        let Some(recorder) = self.recorder.take() else { return };
        let record = StreamRecord {
            stream_type: self.opening.stream_type,
            direction: self.opening.direction,
            path: std::mem::take(&mut self.opening.path),
            bytes: self.bytes,
            chunks: self.chunks,
            chunk_size: self.opening.chunk_size,
            duration: self.started.elapsed(),
            correlation_id: std::mem::take(&mut self.opening.correlation_id),
            outcome,
            started_at_ms: self.started_at_ms,
        };
        recorder.record(&record);
        announce(record);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::stream_records::MockStreamMetrics;

    fn opening() -> StreamOpening {
        StreamOpening {
            stream_type: StreamType::Webrtc,
            direction: Direction::Outbound,
            path: "QmA".into(),
            content: "QmA".into(),
            chunk_size: 0,
            correlation_id: "pc-1".into(),
        }
    }

    #[test]
    fn a_session_counts_while_open_and_records_itself_once() {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let mut recorder = MockStreamMetrics::new();
        let sink = recorded.clone();
        recorder
            .expect_record()
            .returning(move |record| sink.lock().unwrap().push(record.clone()));
        let live = Arc::new(LiveStats::default());
        let mut session = StreamSession::open(opening(), Some(&live), Some(Arc::new(recorder)));
        assert_eq!(live.active_content().len(), 1);
        session.count(10);
        session.count(5);
        let mut announced = 0;
        session.end(Outcome::Aborted, |record| announced = record.bytes);
        session.end(Outcome::Ok, |_| panic!("ended once"));
        session.count(100);
        assert_eq!(announced, 15);
        assert!(live.active_content().is_empty());
        let recorded = recorded.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        let record = &recorded[0];
        assert_eq!((record.bytes, record.chunks, record.outcome), (15, 2, Outcome::Aborted));
        assert_eq!((record.path.as_str(), record.correlation_id.as_str()), ("QmA", "pc-1"));
    }

    #[test]
    fn a_session_not_recorded_still_counts_live() {
        let live = Arc::new(LiveStats::default());
        let mut session = StreamSession::open(opening(), Some(&live), None);
        session.count(7);
        session.end(Outcome::Ok, |_| panic!("not recorded, not announced"));
        assert!(live.active_content().is_empty());
        assert_eq!((session.bytes(), session.chunks()), (7, 1));
    }
}
