//! Every event the server announces, typed: one variant per kind, with the fields its `data`
//! carries. Emitters build an [`Event`]; it becomes the notification's JSON once, in [`emit`].
//! (Events clients publish through the API stay free-form JSON: `custom_event`, `system_*`.)

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::{NotificationType, Notifier};

/// Why a WebRTC connection ended; serialised as [`CloseReason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed by its client, the API, or the server's shutdown.
    Closed,
    /// ICE or DTLS failed (a silent viewer fails its consent checks).
    Failed,
    /// Not connected within the connect timeout.
    NeverConnected,
    /// The server's offer could not be made or applied.
    OfferFailed,
    /// The client's offer was refused.
    OfferRefused,
}

impl Serialize for CloseReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::NeverConnected => "never connected",
            Self::OfferFailed => "offer failed",
            Self::OfferRefused => "offer refused",
        }
    }

    /// Whether the connection ended because something went wrong on the way.
    pub fn is_failure(self) -> bool {
        self != Self::Closed
    }

    /// A connection that failed or never connected was cut short; the others ended as asked.
    pub fn aborted(self) -> bool {
        matches!(self, Self::Failed | Self::NeverConnected)
    }
}

/// Why a WebRTC stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEndReason {
    /// Its media played to the end (or failed: see `error`).
    Finished,
    /// Deleted, or left by its last viewer.
    Stopped,
    /// Its instance (of several sharing a database) stopped answering.
    InstanceLost,
}

/// What a WebRTC error event is about.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WebrtcErrorSubject {
    /// A connection, with its stream.
    Connection { pc_id: String, stream_id: String },
    /// A stream, with its content.
    Stream { stream_id: String, cid: String },
    /// What a play request asked for, before any stream existed.
    Target { target: PlayTarget },
}

/// A stream or a CID that a play request named.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PlayTarget {
    Stream { stream_id: String },
    Cid { cid: String },
}

/// Every event the server emits on its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    ContentAdded {
        cid: String,
        size: u64,
        name: Option<String>,
        blocks: u64,
        pinned: bool,
    },
    ContentRemoved {
        cid: String,
    },
    PinAdded {
        cid: String,
    },
    PinRemoved {
        cid: String,
    },
    /// A stream of bytes that ended: `content_retrieved` when a download completed,
    /// `system_error` when any stream failed.
    StreamEnded {
        #[serde(skip)]
        kind: NotificationType,
        #[serde(skip)]
        source: &'static str,
        path: String,
        bytes: u64,
        stream_type: &'static str,
        direction: &'static str,
        outcome: &'static str,
        correlation_id: String,
    },
    WebrtcConnectionCreated {
        pc_id: String,
        stream_id: String,
        cid: String,
        quality: &'static str,
    },
    WebrtcConnectionEstablished {
        pc_id: String,
        stream_id: String,
        setup_ms: u64,
    },
    WebrtcConnectionClosed {
        pc_id: String,
        stream_id: String,
        reason: CloseReason,
        frames_sent: u64,
        bytes_sent: u64,
        duration_ms: u64,
    },
    WebrtcStreamStarted {
        stream_id: String,
        cid: String,
        renditions: usize,
        viewers: usize,
    },
    WebrtcStreamEnded {
        stream_id: String,
        cid: String,
        reason: StreamEndReason,
        frames_sent: u64,
        underflows: u64,
        error: Option<String>,
    },
    WebrtcQualityChanged {
        pc_id: String,
        stream_id: String,
        from: &'static str,
        to: &'static str,
        reason: &'static str,
        bandwidth_estimate_bps: f64,
        packet_loss: f64,
    },
    WebrtcError {
        #[serde(flatten)]
        subject: WebrtcErrorSubject,
        error: String,
    },
    /// One round of the sampler: every series' value, and when it was taken.
    SystemMetrics {
        #[serde(flatten)]
        values: serde_json::Map<String, serde_json::Value>,
        at_ms: i64,
    },
    /// A security-relevant act: a credential refused, content deleted, every connection
    /// closed, a fault injected. `caller` is the token's name (never the token).
    SecurityAudit {
        action: &'static str,
        caller: String,
        target: String,
        outcome: &'static str,
    },
    /// An anomaly the detector raised on a series.
    Anomaly {
        metric: String,
        value: f64,
        expected_range: [f64; 2],
        score: f64,
        detector: String,
        at_ms: i64,
    },
}

impl Event {
    /// The notification type subscribers filter on.
    pub fn kind(&self) -> NotificationType {
        match self {
            Self::ContentAdded { .. } => NotificationType::ContentAdded,
            Self::ContentRemoved { .. } => NotificationType::ContentRemoved,
            Self::PinAdded { .. } => NotificationType::PinAdded,
            Self::PinRemoved { .. } => NotificationType::PinRemoved,
            Self::StreamEnded { kind, .. } => *kind,
            Self::WebrtcConnectionCreated { .. } => NotificationType::WebrtcConnectionCreated,
            Self::WebrtcConnectionEstablished { .. } => NotificationType::WebrtcConnectionEstablished,
            Self::WebrtcConnectionClosed { .. } => NotificationType::WebrtcConnectionClosed,
            Self::WebrtcStreamStarted { .. } => NotificationType::WebrtcStreamStarted,
            Self::WebrtcStreamEnded { .. } => NotificationType::WebrtcStreamEnded,
            Self::WebrtcQualityChanged { .. } => NotificationType::WebrtcQualityChanged,
            Self::WebrtcError { .. } => NotificationType::WebrtcError,
            Self::SystemMetrics { .. } => NotificationType::SystemMetrics,
            Self::Anomaly { .. } => NotificationType::SystemWarning,
            Self::SecurityAudit { .. } => NotificationType::SecurityAudit,
        }
    }

    /// What emitted it: the notification's `source`.
    pub fn source(&self) -> &'static str {
        match self {
            Self::ContentAdded { .. }
            | Self::ContentRemoved { .. }
            | Self::PinAdded { .. }
            | Self::PinRemoved { .. } => "content",
            Self::StreamEnded { source, .. } => source,
            Self::WebrtcConnectionCreated { .. }
            | Self::WebrtcConnectionEstablished { .. }
            | Self::WebrtcConnectionClosed { .. }
            | Self::WebrtcStreamStarted { .. }
            | Self::WebrtcStreamEnded { .. }
            | Self::WebrtcQualityChanged { .. }
            | Self::WebrtcError { .. } => "webrtc",
            Self::SystemMetrics { .. } => "sampler",
            Self::Anomaly { .. } => "anomaly_detector",
            Self::SecurityAudit { .. } => "access",
        }
    }

    /// The event's `data`: a JSON object of its fields.
    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an event serializes")
    }
}

/// Publishes a typed event through any notifier.
pub fn emit(notifier: &dyn Notifier, event: Event) {
    let (kind, source) = (event.kind(), event.source());
    notifier.publish(kind, EventData::Typed(event), Some(Cow::Borrowed(source)));
}

/// A notification's `data`: the typed event where the server emitted it, JSON where a client
/// published it or the history was read back.
///
/// An event stays typed until something reads it (a subscriber, the history's writer): a busy
/// gateway announces tens of thousands of downloads a second, and most are only held in the
/// history's buffer until newer ones push them out. A JSON tree costs a dozen allocations per
/// event, each freed later on some other thread, which is where glibc's allocator spends its time
/// (the arena locks): the event itself holds two strings.
#[derive(Clone, Debug)]
pub enum EventData {
    Typed(Event),
    Json(Value),
}

impl EventData {
    /// The JSON object subscribers and the history see.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Typed(event) => event.data(),
            Self::Json(value) => value.clone(),
        }
    }

    pub fn into_json(self) -> Value {
        match self {
            Self::Typed(event) => event.data(),
            Self::Json(value) => value,
        }
    }

    /// The JSON text, written straight from the typed event (no tree in between).
    pub fn to_json_text(&self) -> String {
        match self {
            Self::Typed(event) => serde_json::to_string(event).expect("an event serializes"),
            Self::Json(value) => value.to_string(),
        }
    }
}

/// Equal when their JSON is: a typed event equals the JSON it becomes.
impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Typed(a), Self::Typed(b)) => a == b,
            (Self::Json(a), Self::Json(b)) => a == b,
            _ => self.to_json() == other.to_json(),
        }
    }
}

impl From<Value> for EventData {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_carry_the_fields_subscribers_read() {
        let closed = Event::WebrtcConnectionClosed {
            pc_id: "pc-1".into(),
            stream_id: "st-1".into(),
            reason: CloseReason::NeverConnected,
            frames_sent: 3,
            bytes_sent: 4,
            duration_ms: 5,
        };
        assert_eq!(closed.kind(), NotificationType::WebrtcConnectionClosed);
        assert_eq!(
            closed.data(),
            json!({"pc_id": "pc-1", "stream_id": "st-1", "reason": "never connected",
                   "frames_sent": 3, "bytes_sent": 4, "duration_ms": 5})
        );
        let error = Event::WebrtcError {
            subject: WebrtcErrorSubject::Stream {
                stream_id: "st-1".into(),
                cid: "QmA".into(),
            },
            error: "bad media".into(),
        };
        assert_eq!(
            error.data(),
            json!({"stream_id": "st-1", "cid": "QmA", "error": "bad media"})
        );
        let refused = Event::WebrtcError {
            subject: WebrtcErrorSubject::Target {
                target: PlayTarget::Cid { cid: "QmA".into() },
            },
            error: "not found".into(),
        };
        assert_eq!(refused.data(), json!({"target": {"cid": "QmA"}, "error": "not found"}));
        let ended = Event::WebrtcStreamEnded {
            stream_id: "st-1".into(),
            cid: "QmA".into(),
            reason: StreamEndReason::Stopped,
            frames_sent: 1,
            underflows: 0,
            error: None,
        };
        assert_eq!(ended.data()["reason"], "stopped");
        assert_eq!(ended.data()["error"], serde_json::Value::Null);
        let mut values = serde_json::Map::new();
        values.insert("cpu".into(), json!(0.5));
        let sample = Event::SystemMetrics { values, at_ms: 7 };
        assert_eq!(sample.data(), json!({"cpu": 0.5, "at_ms": 7}));
        assert_eq!(sample.source(), "sampler");
    }

    #[test]
    fn close_reasons_say_how_the_connection_ended() {
        for reason in [
            CloseReason::Closed,
            CloseReason::Failed,
            CloseReason::NeverConnected,
            CloseReason::OfferFailed,
            CloseReason::OfferRefused,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert!(!CloseReason::Closed.is_failure() && CloseReason::OfferRefused.is_failure());
        assert!(CloseReason::Failed.aborted() && !CloseReason::OfferFailed.aborted());
    }

    #[test]
    fn a_typed_event_reads_as_the_json_it_becomes() {
        let event = Event::StreamEnded {
            kind: NotificationType::ContentRetrieved,
            source: "http",
            path: "/ipfs/QmA".into(),
            bytes: 5,
            stream_type: "http",
            direction: "outbound",
            outcome: "ok",
            correlation_id: "req-1".into(),
        };
        let json = json!({"path": "/ipfs/QmA", "bytes": 5, "stream_type": "http", "direction": "outbound",
                          "outcome": "ok", "correlation_id": "req-1"});
        let typed = EventData::Typed(event);
        assert_eq!(typed.to_json(), json);
        assert_eq!(serde_json::from_str::<Value>(&typed.to_json_text()).unwrap(), json);
        assert_eq!(typed, EventData::Json(json.clone()));
        assert_ne!(typed, EventData::Json(json!({"path": "/ipfs/QmB"})));
        assert_eq!(typed.into_json(), json);
    }
}
