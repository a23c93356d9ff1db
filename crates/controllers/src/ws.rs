//! WebSocket streaming: `/ws/stream/{cid}` downloads, `/ws/upload` uploads.
//!
//! Every JSON message has a `type`. A download sends `metadata`, binary chunks, then `complete`;
//! an upload receives `metadata`, binary chunks and `complete`, and answers `progress` and `result`.
//! Failures are `{"type": "error", "error": code, "message": ...}`, then a close whose code says
//! why: 1008 for a bad request, 1009 for a frame or upload over the limit, 1011 for a server error.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Message, MessageStream, Session};
use futures::StreamExt;
use model::content::{AddRequest, ByteRange, ImportOptions};
use model::stream_records::{Direction, Outcome, StreamType};
use serde::{Deserialize, Serialize};
use serde_json::json;
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::parse_query;
use crate::metering::{Meter, Tally, outcome_of};
use crate::rechunk::rechunk;
use crate::upload::channel;

/// Largest frame a client may send (a bigger one closes the socket with 1009).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Binary messages larger than this go out as fragments of this size: a session queues 32 items,
/// so a connection holds at most 32 fragments (1 MiB) whatever chunk size its client asked for.
const FRAGMENT: usize = 32 * 1024;
/// Upload progress messages, at most one per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Options of a WebSocket download.
#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Bytes per binary message, 1 KiB to 4 MiB (default 256 KiB).
    #[validate(range(min = 1024, max = 4194304, message = "must be between 1024 and 4194304"))]
    #[param(minimum = 1024, maximum = 4194304)]
    pub chunk_size: Option<u64>,
    /// First byte to send (to resume).
    pub offset: Option<u64>,
    /// Bytes to send at most.
    pub length: Option<u64>,
}

/// Client messages with fragmented messages joined up (a fragment is never dropped: uploads must see
/// every byte), each frame and each whole message at most [`MAX_FRAME`] bytes.
pub fn aggregated(messages: MessageStream) -> AggregatedMessageStream {
    messages
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME)
}

/// A failure told to the client before the close.
struct Failure {
    code: String,
    message: String,
    close: CloseCode,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        let close = if e.status.is_server_error() {
            CloseCode::Error
        } else {
            CloseCode::Policy
        };
        Self {
            code: e.code.to_owned(),
            message: e.message,
            close,
        }
    }
}

impl From<model::Error> for Failure {
    fn from(e: model::Error) -> Self {
        if let model::Error::TooLarge { .. } = e {
            return Self {
                code: "too_large".into(),
                message: e.to_string(),
                close: CloseCode::Size,
            };
        }
        ApiError::from(e).into()
    }
}

/// Sends one binary message, in fragments when it is large; false when the client is gone.
pub async fn send_binary(session: &mut Session, message: bytes::Bytes) -> bool {
    if message.len() <= FRAGMENT {
        return session.binary(message).await.is_ok();
    }
    let mut rest = message;
    let mut item = actix_ws::Item::FirstBinary(rest.split_to(FRAGMENT));
    loop {
        if session.continuation(item).await.is_err() {
            return false;
        }
        if rest.is_empty() {
            return true;
        }
        let piece = rest.split_to(FRAGMENT.min(rest.len()));
        item = if rest.is_empty() {
            actix_ws::Item::Last(piece)
        } else {
            actix_ws::Item::Continue(piece)
        };
    }
}

async fn send_json(session: &mut Session, value: serde_json::Value) -> bool {
    session.text(value.to_string()).await.is_ok()
}

async fn fail(mut session: Session, failure: Failure) {
    let _ = send_json(
        &mut session,
        json!({"type": "error", "error": failure.code, "message": failure.message}),
    )
    .await;
    let reason = CloseReason {
        code: failure.close,
        description: Some(failure.code),
    };
    let _ = session.close(Some(reason)).await;
}

/// `GET /ws/stream/{cid}[/path]?chunk_size=&offset=&length=`: a file as binary messages.
pub async fn stream(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, messages) = actix_ws::handle(&req, body)?;
    let meter = Meter::for_request(
        &req,
        &state,
        StreamType::Websocket,
        Direction::Outbound,
        req.path().into(),
    );
    let target = req.path().to_owned();
    let query = req.query_string().to_owned();
    actix_web::rt::spawn(async move {
        let messages = messages.max_frame_size(MAX_FRAME);
        if let Err((session, failure)) = send_file(&state, session, messages, &target, &query, meter).await {
            fail(session, failure).await;
        }
    });
    Ok(response)
}

async fn send_file(
    state: &AppState,
    mut session: Session,
    mut messages: MessageStream,
    target: &str,
    query: &str,
    mut meter: Meter,
) -> Result<(), (Session, Failure)> {
    macro_rules! attempt {
        ($e:expr) => {
            match $e {
                Ok(value) => value,
                Err(e) => return Err((session, Failure::from(e))),
            }
        };
    }
    let params: StreamParams = attempt!(parse_query(query));
    let (cid, stat, segments) =
        attempt!(crate::content_path::file_at(state.content.as_ref(), target, "/ws/stream/").await);
    let chunk_size = params.chunk_size.unwrap_or(256 * 1024);
    let range = ByteRange::new(params.offset.unwrap_or(0), params.length);
    let (start, end) = attempt!(range.clamp(&cid, stat.size));
    let content_type = attempt!(
        crate::gateway::content_type(
            state.content.as_ref(),
            &cid,
            stat.size,
            segments.last().map(String::as_str)
        )
        .await
    );
    let body = attempt!(state.content.read(&cid, range).await);
    meter.chunk_size = chunk_size;
    let mut tally = Tally::start(meter);
    let metadata = json!({
        "type": "metadata", "cid": cid.to_string(), "size": stat.size, "content_type": content_type,
        "chunk_size": chunk_size, "offset": start, "length": end - start,
    });
    if !send_json(&mut session, metadata).await {
        return Ok(()); // the client left; the tally records an abort
    }
    let started = Instant::now();
    let mut chunks = Box::pin(rechunk(body, chunk_size as usize));
    loop {
        tokio::select! {
            // Sending waits while the session's queue (32 messages) is full: a slow reader slows
            // only its own stream.
            next = chunks.next() => match next {
                Some(Ok(chunk)) => {
                    let len = chunk.len();
                    if !send_binary(&mut session, chunk).await {
                        return Ok(());
                    }
                    tally.count(len);
                }
                Some(Err(e)) => {
                    tally.finish(outcome_of(&e));
                    return Err((session, e.into()));
                }
                None => break,
            },
            message = messages.next() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    let _ = session.pong(&bytes).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    tally.finish(Outcome::Ok);
    let complete = json!({
        "type": "complete", "bytes_sent": tally.bytes(), "chunks": tally.chunks(),
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if send_json(&mut session, complete).await {
        let _ = session.close(Some(CloseCode::Normal.into())).await;
    }
    Ok(())
}

/// The first message of an upload.
#[derive(Debug, Deserialize, Validate)]
pub struct UploadMetadata {
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    filename: String,
    content_type: Option<String>,
    /// Expected size, for progress percentages.
    size: Option<u64>,
    cid_version: Option<u8>,
    raw_leaves: Option<bool>,
    chunker: Option<String>,
    pin: Option<bool>,
}

#[derive(Serialize)]
struct Progress {
    r#type: &'static str,
    bytes_received: u64,
    chunks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
}

/// `GET /ws/upload`: metadata, binary chunks, complete → progress..., result.
pub async fn upload(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, messages) = actix_ws::handle(&req, body)?;
    let meter = Meter::for_request(
        &req,
        &state,
        StreamType::Websocket,
        Direction::Inbound,
        req.path().into(),
    );
    actix_web::rt::spawn(async move {
        if let Err((session, failure)) = receive_file(&state, session, aggregated(messages), meter).await {
            fail(session, failure).await;
        }
    });
    Ok(response)
}

/// A WebSocket `error` message: `{"type": "error", "error": code, "message": ...}`.
pub(crate) fn error_message(code: &str, message: impl Into<String>) -> serde_json::Value {
    json!({"type": "error", "error": code, "message": message.into()})
}

/// Reads messages until a valid `metadata` arrives; errors on the way are reported, not fatal.
async fn await_metadata(session: &mut Session, messages: &mut AggregatedMessageStream) -> Option<UploadMetadata> {
    loop {
        let text = match messages.next().await? {
            Ok(AggregatedMessage::Text(text)) => text,
            Ok(AggregatedMessage::Binary(_)) => {
                let reply = error_message("expected_metadata", "a binary frame came before the metadata message");
                if !send_json(session, reply).await {
                    return None;
                }
                continue;
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = session.pong(&bytes).await;
                continue;
            }
            Ok(AggregatedMessage::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        };
        let reply = match read_metadata(&text) {
            Ok(metadata) => return Some(metadata),
            Err(reply) => reply,
        };
        if !send_json(session, reply).await {
            return None;
        }
    }
}

/// An upload's first text message as a valid `metadata`, or the `error` message to answer.
pub fn read_metadata(text: &str) -> Result<UploadMetadata, serde_json::Value> {
    let value = serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| error_message("invalid_json", format!("not JSON: {e}")))?;
    if value["type"] != "metadata" {
        return Err(error_message(
            "expected_metadata",
            format!("the first message must have type \"metadata\", not {}", value["type"]),
        ));
    }
    let metadata = serde_json::from_value::<UploadMetadata>(value)
        .map_err(|e| error_message("invalid_metadata", e.to_string()))?;
    metadata
        .validate()
        .map_err(|e| error_message("invalid_metadata", ApiError::from(e).message))?;
    Ok(metadata)
}

async fn receive_file(
    state: &AppState,
    mut session: Session,
    mut messages: AggregatedMessageStream,
    meter: Meter,
) -> Result<(), (Session, Failure)> {
    let Some(metadata) = await_metadata(&mut session, &mut messages).await else {
        return Ok(());
    };
    let options = match ImportOptions::new(metadata.cid_version, metadata.raw_leaves, metadata.chunker.as_deref()) {
        Ok(options) => options,
        Err(e) => return Err((session, e.into())),
    };
    let limit = state.limits.max_upload_bytes;
    let (sender, input) = channel(&state.upload_buffers);
    let mut tally = Tally::start(meter);
    let request = AddRequest {
        options,
        name: Some(metadata.filename.clone()),
        content_type: metadata.content_type.clone(),
        pin: metadata.pin.unwrap_or(true),
        limit: Some(limit),
    };
    let content = state.content.clone();
    // The import runs on its own task, so waiting on a full channel here never stalls it.
    let import = actix_web::rt::spawn(async move { content.add(input, request).await });
    let mut last_progress = Instant::now();
    let mut sender = Some(sender);
    while let Some(live) = sender.as_ref() {
        let idle = state.limits.body_idle_timeout;
        let Ok(message) = tokio::time::timeout(idle, messages.next()).await else {
            // Silent too long: the import fails (nothing of it becomes visible) and the client
            // is told why.
            let _ = live.send(Err(model::Error::InputStalled(idle))).await;
            drop(sender);
            let _ = import.await;
            tally.finish(Outcome::Aborted);
            return Err((session, model::Error::InputStalled(idle).into()));
        };
        match message {
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                tally.count(bytes.len());
                let piece = if tally.bytes() > limit {
                    Err(model::Error::TooLarge { limit })
                } else {
                    Ok(bytes)
                };
                let over = piece.is_err();
                if live.send(piece).await.is_err() || over {
                    break; // the import stopped (over the limit, or failed): its result says why
                }
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    let progress = Progress {
                        r#type: "progress",
                        bytes_received: tally.bytes(),
                        chunks: tally.chunks(),
                        percent: metadata
                            .size
                            .filter(|s| *s > 0)
                            .map(|s| (tally.bytes() as f64 * 100.0 / s as f64).min(100.0)),
                    };
                    let _ = session.text(serde_json::to_string(&progress).expect("JSON")).await;
                }
            }
            Some(Ok(AggregatedMessage::Text(text))) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) if value["type"] == "complete" => {
                    sender = None; // end of input: the import finishes
                    break;
                }
                Ok(value) => {
                    let reply = error_message("unknown_type", format!("unknown message type {}", value["type"]));
                    let _ = send_json(&mut session, reply).await;
                }
                Err(e) => {
                    let _ = send_json(&mut session, error_message("invalid_json", format!("not JSON: {e}"))).await;
                }
            },
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                let _ = session.pong(&bytes).await;
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => {
                // Gone before `complete`: fail the import so nothing becomes visible.
                let _ = live
                    .send(Err(model::Error::Input("the client closed before complete".into())))
                    .await;
                drop(sender);
                let _ = import.await;
                return Ok(());
            }
            Some(Err(actix_ws::ProtocolError::Overflow)) => {
                let _ = live.send(Err(model::Error::Input("frame too large".into()))).await;
                drop(sender);
                let _ = import.await;
                tally.finish(Outcome::Aborted);
                let failure = Failure {
                    code: "frame_too_large".into(),
                    message: format!("a frame is larger than {MAX_FRAME} bytes"),
                    close: CloseCode::Size,
                };
                return Err((session, failure));
            }
            Some(Err(e)) => {
                let _ = live.send(Err(model::Error::Input(format!("websocket: {e}")))).await;
                drop(sender);
                let _ = import.await;
                return Ok(());
            }
            Some(Ok(_)) => {}
        }
    }
    drop(sender);
    match import.await {
        Ok(Ok(record)) => {
            tally.finish(Outcome::Ok);
            let result = json!({"type": "result", "success": true, "cid": record.cid.to_string(), "size": record.size});
            if send_json(&mut session, result).await {
                let _ = session.close(Some(CloseCode::Normal.into())).await;
            }
            Ok(())
        }
        Ok(Err(e)) => {
            tally.finish(outcome_of(&e));
            Err((session, e.into()))
        }
        Err(e) => Err((session, model::Error::task("import", e).into())),
    }
}
