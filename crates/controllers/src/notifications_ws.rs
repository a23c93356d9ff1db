//! Live notifications: `GET /ws/notifications` (the `action` protocol) and
//! `GET /api/v1/notifications/history`.
//!
//! Client messages carry an `action`: `subscribe {notification_types, filters?, after_id?}`,
//! `unsubscribe {notification_types?}`, `get_history {limit?, notification_type?, after_id?}`,
//! `ping`, `get_metrics`, `get_info`. The server sends `welcome` first, then replies and events
//! (`{"type": "notification", id, notification_type, data, timestamp, source, instance?}`), a
//! `heartbeat` after 30 s without traffic, and closes an idle connection (no client message for the
//! configured time) with 1000. A subscriber that cannot keep up is disconnected with 1008
//! `slow_consumer`.
//!
//! Events arrive in the order of their ids. A client that reconnects subscribes with `after_id`,
//! the last id it saw: the events it missed that the history still keeps come first, then the
//! live ones, none twice. The confirmation's `missed_types` names the subscribed types of which
//! some events after that id are no longer kept, so the client knows to catch up another way.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use model::clock::now_ms;
use model::notifications::{Connection, Delivery, Notification, NotificationType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;
use validator::Validate;

use crate::AppState;
use crate::batched_ws::{self, CloseCode, CloseReason, Fed, Feed, Incoming, Outgoing, frame_close, frame_text};
use crate::error::ApiError;
use crate::extract::Checked;
use crate::ws::error_message;

/// Events queued per subscriber before it counts as not keeping up.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Silence after which the server sends a heartbeat.
const HEARTBEAT_AFTER: Duration = Duration::from_secs(30);
/// A send that cannot go out for this long means the client stopped reading: the connection ends.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Client messages larger than this close the connection (1009).
const MAX_MESSAGE: usize = 64 * 1024;
/// Events read from the history at a time when a subscriber resumes.
const RESUME_PAGE: u64 = 1000;

fn type_names() -> Vec<&'static str> {
    NotificationType::ALL.iter().map(NotificationType::as_str).collect()
}

/// Splits names into known types and the names that are not types.
fn parse_types(value: &Value) -> (Vec<NotificationType>, Vec<String>) {
    let names: Vec<String> = match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match NotificationType::parse(&name) {
            Some(kind) => known.push(kind),
            None => unknown.push(name),
        }
    }
    (known, unknown)
}

/// `GET /ws/notifications`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let connection = state.hub.connect(SUBSCRIBER_QUEUE);
    let id = connection.id;
    let last_sent = Rc::new(Cell::new(Instant::now()));
    let resumed_through = Rc::new(Cell::new(i64::MIN));
    // The hub's events go from the subscriber's queue to the socket as the connection writes:
    // no task of ours wakes up for them.
    let feed = EventFeed {
        connection,
        resumed_through: resumed_through.clone(),
        last_sent: last_sent.clone(),
    };
    let (response, session, messages) = match batched_ws::handle(&req, body, MAX_MESSAGE, feed) {
        Ok(accepted) => accepted,
        Err(refused) => {
            state.hub.disconnect(id);
            return Err(refused);
        }
    };
    let connected = Connected {
        id,
        last_sent,
        resumed_through,
    };
    actix_web::rt::spawn(serve(state, connected, session, messages));
    Ok(response)
}

/// One subscriber's events, as its connection takes them.
struct EventFeed {
    connection: Connection,
    /// Events up to this id were sent from the history when the client resumed.
    resumed_through: Rc<Cell<i64>>,
    last_sent: Rc<Cell<Instant>>,
}

impl Feed for EventFeed {
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<Fed> {
        loop {
            // Dropped by the hub for not keeping up: close now rather than push the backlog into
            // a socket that is not being read.
            if self.connection.lagged.load(Ordering::Relaxed) {
                return Poll::Ready(Fed::Last(slow_consumer_goodbye()));
            }
            let Some(batch) = std::task::ready!(self.connection.poll_batch(cx)) else {
                // The queue closes after the flag is set: look once more.
                if self.connection.lagged.load(Ordering::Relaxed) {
                    continue;
                }
                return Poll::Ready(Fed::Ended);
            };
            let through = self.resumed_through.get();
            let fresh = |event: &&Arc<Delivery>| event.notification.id.is_none_or(|id| id > through);
            // Ids rise through a batch: one whose first event is fresh is fresh whole, and goes in
            // the frames every subscriber of the batch shares.
            let chunk = if batch.first().is_none_or(|first| fresh(&first)) {
                batch.wire_form(|events| frame_events(events))
            } else {
                frame_events(batch.iter().filter(fresh))
            };
            if !chunk.is_empty() {
                self.last_sent.set(Instant::now());
                return Poll::Ready(Fed::Chunk(chunk));
            }
        }
    }
}

/// Events as WebSocket text frames, each the text the hub serialized once.
fn frame_events<'a>(events: impl IntoIterator<Item = &'a Arc<Delivery>>) -> Bytes {
    let mut chunk = BytesMut::new();
    for event in events {
        frame_text(&mut chunk, &event.text);
    }
    chunk.freeze()
}

/// The error and the close that end a subscriber the hub dropped.
fn slow_consumer_goodbye() -> Bytes {
    let mut goodbye = BytesMut::new();
    let reply = error_message(
        "slow_consumer",
        "this subscriber could not keep up with the events and was disconnected",
    );
    frame_text(&mut goodbye, &reply.to_string());
    frame_close(
        &mut goodbye,
        Some(CloseReason {
            code: CloseCode::Policy,
            description: Some("slow_consumer".to_owned()),
        }),
    );
    goodbye.freeze()
}

/// What the connection's task shares with its feed.
struct Connected {
    id: u64,
    last_sent: Rc<Cell<Instant>>,
    resumed_through: Rc<Cell<i64>>,
}

async fn serve(state: web::Data<AppState>, connected: Connected, mut session: Outgoing, mut messages: Incoming) {
    let Connected {
        id,
        last_sent,
        resumed_through,
    } = connected;
    let connected_at = now_ms();
    let idle_timeout = state.limits.notification_idle_timeout;
    let welcome = json!({
        "type": "welcome", "connection_id": id, "available_notifications": type_names(), "server_time": connected_at,
    });
    let mut open = session.text(&welcome.to_string()).await.is_ok();
    // Two timers for the connection's life. The heartbeat's is not moved on each send (a timer
    // reset takes the runtime's timer lock, and a busy subscriber sends a hundred times a
    // second): when it fires, it looks at when the connection last sent.
    let heartbeat = tokio::time::sleep(HEARTBEAT_AFTER);
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(heartbeat, idle);
    let mut close: Option<CloseReason> = None;
    while open {
        let reply = tokio::select! {
            message = messages.next() => {
                idle.as_mut().reset(Instant::now() + idle_timeout);
                match message {
                    Some(Ok(Message::Text(text))) => {
                        // The answer goes before any event its subscription lets through, and a
                        // resuming client's missed events before the live ones.
                        open = in_time(session.hold_feed()).await;
                        let answer = handle_action(&state, id, connected_at, &text).await;
                        session.push_text(&answer.reply.to_string());
                        for message in &answer.resumed {
                            session.push_text(&message.to_string());
                            let resumed = message["id"].as_i64().unwrap_or(i64::MIN);
                            resumed_through.set(resumed_through.get().max(resumed));
                        }
                        open = open && in_time(session.release_feed()).await;
                        last_sent.set(Instant::now());
                        None
                    }
                    Some(Ok(Message::Binary(_))) => Some(error_message("unsupported", "binary messages are not part of this protocol")),
                    Some(Ok(Message::Ping(bytes))) => {
                        // A client that pings and never reads is not waited for longer than any send.
                        open = in_time(session.pong(&bytes)).await;
                        None
                    }
                    Some(Err(actix_ws::ProtocolError::Overflow)) => {
                        close = Some(CloseReason { code: CloseCode::Size, description: Some("message_too_large".into()) });
                        break;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => None,
                }
            },
            _ = &mut heartbeat => {
                let due = last_sent.get() + HEARTBEAT_AFTER;
                if due > Instant::now() {
                    heartbeat.as_mut().reset(due);
                    None
                } else {
                    Some(json!({"type": "heartbeat", "timestamp": now_ms()}))
                }
            },
            _ = &mut idle => {
                close = Some(CloseReason { code: CloseCode::Normal, description: Some("idle".into()) });
                break;
            }
        };
        if let Some(reply) = reply {
            open = send(&mut session, reply.to_string()).await;
            last_sent.set(Instant::now());
            heartbeat.as_mut().reset(last_sent.get() + HEARTBEAT_AFTER);
        }
    }
    state.hub.disconnect(id);
    // Bounded too: a client that stopped reading may never make room for the close frame.
    in_time(session.close(close)).await;
}

/// Sends one message; false once the client stops reading.
async fn send(session: &mut Outgoing, text: String) -> bool {
    in_time(session.text(&text)).await
}

/// Whether a send went out within [`SEND_TIMEOUT`]: a client that does not read for that long is
/// not waited for.
async fn in_time(send: impl Future<Output = Result<(), batched_ws::Closed>>) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, send).await, Ok(Ok(())))
}

#[derive(Deserialize)]
struct ActionMessage {
    action: Option<String>,
    #[serde(default)]
    notification_types: Option<Value>,
    #[serde(default)]
    filters: Option<BTreeMap<String, Value>>,
    limit: Option<u64>,
    notification_type: Option<String>,
    after_id: Option<i64>,
}

/// The reply to a client message, and the events a resuming subscriber missed (as subscribers
/// see them), to send after it.
pub struct Answer {
    pub reply: Value,
    pub resumed: Vec<Value>,
}

impl From<Value> for Answer {
    fn from(reply: Value) -> Self {
        Answer {
            reply,
            resumed: Vec::new(),
        }
    }
}

fn subscription_names(subscription: &model::notifications::Subscription) -> Vec<&'static str> {
    subscription.types.iter().map(NotificationType::as_str).collect()
}

/// The answer to one text message of subscriber `id`: subscribe, unsubscribe, history, ping.
pub async fn handle_action(state: &AppState, id: u64, connected_at: i64, text: &str) -> Answer {
    let message: ActionMessage = match serde_json::from_str::<Value>(text) {
        Err(e) => return error_message("invalid_json", format!("not JSON: {e}")).into(),
        Ok(value) => match serde_json::from_value(value) {
            Ok(message) => message,
            Err(e) => return error_message("invalid_message", e.to_string()).into(),
        },
    };
    if message.after_id.is_some_and(|after| after < 0) {
        return error_message("invalid_parameter", "after_id: must not be negative").into();
    }
    match message.action.as_deref() {
        Some("subscribe") => subscribe(state, id, message).await,
        _ => reply(state, id, connected_at, message).await.into(),
    }
}

/// Subscribes; with `after_id`, also reads the matching events the history keeps past that id.
/// The subscription is in force before the history is read, so an event published meanwhile is
/// in one or the other, or both (then sent once: the connection skips live events up to the last
/// one read).
async fn subscribe(state: &AppState, id: u64, message: ActionMessage) -> Answer {
    let hub = &state.hub;
    let (types, invalid) = parse_types(message.notification_types.as_ref().unwrap_or(&Value::Null));
    let subscription = hub.subscribe(id, &types, message.filters).unwrap_or_default();
    let mut reply = json!({
        "type": "subscription_confirmed", "notification_types": subscription_names(&subscription),
        "filters": subscription.filters, "invalid_types": invalid,
    });
    let Some(after_id) = message.after_id else {
        return reply.into();
    };
    let mut resumed = Vec::new();
    let mut after = after_id;
    loop {
        let page = match hub.history(None, Some(after), RESUME_PAGE).await {
            Ok(page) => page,
            Err(e) => return error_message("store_error", format!("cannot resume: {e}")).into(),
        };
        let full = page.len() as u64 == RESUME_PAGE;
        after = page.last().and_then(|n| n.id).unwrap_or(after);
        for notification in page {
            let message = notification.to_message();
            if subscription.matches(&notification, &message) {
                resumed.push(message);
            }
        }
        if !full {
            break;
        }
    }
    let missed = match hub.dropped_after(after_id).await {
        Ok(dropped) => names_of(dropped, |kind| subscription.wants(kind)).into(),
        Err(e) => return error_message("store_error", format!("cannot resume: {e}")).into(),
    };
    reply["resumed_after"] = after_id.into();
    reply["resumed"] = resumed.len().into();
    reply["missed_types"] = missed;
    Answer { reply, resumed }
}

/// The names of the types `wanted` keeps.
fn names_of(kinds: Vec<NotificationType>, wanted: impl Fn(NotificationType) -> bool) -> Vec<&'static str> {
    kinds
        .into_iter()
        .filter(|kind| wanted(*kind))
        .map(|kind| kind.as_str())
        .collect()
}

async fn reply(state: &AppState, id: u64, connected_at: i64, message: ActionMessage) -> Value {
    let hub = &state.hub;
    match message.action.as_deref() {
        None => error_message("missing_action", "every message needs an \"action\""),
        Some("unsubscribe") => {
            let (types, invalid) = match &message.notification_types {
                Some(value) => {
                    let (types, invalid) = parse_types(value);
                    (Some(types), invalid)
                }
                None => (None, Vec::new()),
            };
            let subscription = hub.unsubscribe(id, types.as_deref()).unwrap_or_default();
            json!({
                "type": "unsubscription_confirmed", "notification_types": subscription_names(&subscription),
                "invalid_types": invalid,
            })
        }
        Some("get_history") => {
            let limit = message.limit.unwrap_or(100);
            if !(1..=1000).contains(&limit) {
                return error_message("invalid_parameter", "limit: must be between 1 and 1000");
            }
            let kind = match message.notification_type.as_deref() {
                None => None,
                Some(name) => match NotificationType::parse(name) {
                    Some(kind) => Some(kind),
                    None => return error_message("invalid_type", format!("{name:?} is not a notification type")),
                },
            };
            let events = match hub.history(kind, message.after_id, limit).await {
                Ok(events) => events,
                Err(e) => return error_message("store_error", e.to_string()),
            };
            let events: Vec<Value> = events.iter().map(Notification::to_message).collect();
            let mut reply = json!({"type": "history", "count": events.len(), "events": events});
            if let Some(after_id) = message.after_id {
                match hub.dropped_after(after_id).await {
                    Ok(dropped) => {
                        reply["missed_types"] = names_of(dropped, |dropped| kind.is_none_or(|k| k == dropped)).into()
                    }
                    Err(e) => return error_message("store_error", e.to_string()),
                }
            }
            reply
        }
        Some("ping") => json!({"type": "pong", "timestamp": now_ms()}),
        Some("get_metrics") => {
            let m = hub.metrics();
            json!({"type": "metrics", "metrics": {
                "connections_total": m.connections_total, "active_connections": m.active_connections,
                "notifications_sent": m.notifications_sent, "notifications_published": m.notifications_published,
                "notifications_relayed": m.notifications_relayed,
                "slow_consumers_dropped": m.slow_consumers_dropped, "subscriptions_by_type": m.subscriptions_by_type,
            }})
        }
        Some("get_info") => {
            let subscription = hub.subscription(id).unwrap_or_default();
            json!({
                "type": "connection_info", "connection_id": id, "connected_at": connected_at,
                "subscriptions": subscription_names(&subscription), "filters": subscription.filters,
            })
        }
        Some(other) => error_message("unknown_action", format!("unknown action {other:?}")),
    }
}

/// An event published by a client.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PublishRequest {
    /// custom_event, or one of system_info, system_warning, system_error.
    #[schema(example = "custom_event")]
    pub notification_type: String,
    /// A JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
    pub source: Option<String>,
}

/// Types a client may publish: its own events, and operator-level system messages.
pub(crate) const PUBLISHABLE: [NotificationType; 4] = [
    NotificationType::CustomEvent,
    NotificationType::SystemInfo,
    NotificationType::SystemWarning,
    NotificationType::SystemError,
];

/// Publishes an event to every subscriber (and the history).
#[utoipa::path(
    post,
    path = "/api/v1/notifications",
    tag = "notifications",
    request_body = PublishRequest,
    responses(
        (status = 202, description = "Published"),
        (status = 400, description = "A type clients may not publish, or data that is not an object", body = crate::error::ErrorBody),
    ),
)]
pub async fn publish(
    body: crate::extract::Json<PublishRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let kind = NotificationType::parse(&body.notification_type)
        .filter(|k| PUBLISHABLE.contains(k))
        .ok_or_else(|| {
            ApiError::bad_parameter(
                "notification_type",
                format!(
                    "{:?} cannot be published: use custom_event or system_info|warning|error",
                    body.notification_type
                ),
            )
        })?;
    if !body.data.is_object() {
        return Err(ApiError::bad_parameter("data", "data must be a JSON object"));
    }
    let source = body.source.map_or(Cow::Borrowed("api"), Cow::Owned);
    model::notifications::Notifier::publish(state.hub.as_ref(), kind, body.data.into(), Some(source));
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Events at most, 1 to 1000 (default 100).
    #[validate(range(min = 1, max = 1000, message = "must be between 1 and 1000"))]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Only this type (e.g. content_added).
    pub notification_type: Option<String>,
    /// The first `limit` events after the one of this id (the last a client saw), instead of
    /// the most recent.
    #[validate(range(min = 0, message = "must not be negative"))]
    #[param(minimum = 0)]
    pub after_id: Option<i64>,
}

/// A notification as subscribers receive it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationBody {
    /// Always `notification`.
    pub r#type: String,
    /// Events arrive in the order of their ids; give the last one seen as `after_id` to resume.
    pub id: Option<i64>,
    pub notification_type: String,
    #[schema(value_type = Object)]
    pub data: Value,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub source: Option<String>,
    /// The instance that published it, where several share a database.
    pub instance: Option<String>,
}

/// Notification history, oldest first, kept in the database (the newest 1000 per type): the most
/// recent events, or, with `after_id`, the first ones after that event (to resume, or to page
/// forward).
#[utoipa::path(
    get,
    path = "/api/v1/notifications/history",
    tag = "notifications",
    params(HistoryQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = Vec<NotificationBody>, headers(
            ("Missed-Types" = String, description = "With `after_id`: the types (the one asked for, or any) of which some events published after that id are no longer kept, comma-separated; empty when the pages from it are all that was published"),
        )),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ),
)]
pub async fn history(query: Checked<HistoryQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let kind = match query.notification_type.as_deref() {
        None => None,
        Some(name) => Some(NotificationType::parse(name).ok_or_else(|| {
            ApiError::bad_parameter("notification_type", format!("{name:?} is not a notification type"))
        })?),
    };
    let events = state
        .hub
        .history(kind, query.after_id, query.limit.unwrap_or(100))
        .await?;
    let missed = match query.after_id {
        Some(after_id) => Some(names_of(state.hub.dropped_after(after_id).await?, |dropped| {
            kind.is_none_or(|k| k == dropped)
        })),
        None => None,
    };
    let body: Vec<NotificationBody> = events
        .into_iter()
        .map(|n| NotificationBody {
            r#type: "notification".into(),
            id: n.id,
            notification_type: n.kind.as_str().into(),
            data: n.data.into_json(),
            timestamp: n.timestamp_ms,
            source: n.source.map(Cow::into_owned),
            instance: n.instance,
        })
        .collect();
    let mut response = HttpResponse::Ok();
    if let Some(missed) = missed {
        response.insert_header(("Missed-Types", missed.join(",")));
    }
    Ok(response.json(body))
}
