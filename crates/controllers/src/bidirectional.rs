//! `GET /ws/bidirectional`: downloads and uploads on one socket, served concurrently.
//!
//! Text messages are JSON commands: `get {cid, offset?, length?}`, `add {filename, content_type?,
//! size?, cid_version?, raw_leaves?, chunker?, pin?}`, `complete {transfer_id}`, `pin {cid}`, `ping`,
//! `close`. A command may carry a `request_id`, echoed in its replies. Each transfer gets a
//! `transfer_id` (a u32) in its first reply (`metadata` for a get, `ready` for an add).
//!
//! Binary frames of every transfer, both ways, start with the transfer id as 4 big-endian bytes;
//! the rest of the frame is payload. That is how frames of interleaved transfers are told apart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, Session};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use model::content::{AddRequest, ByteRange, ImportOptions, NodeKind, parse_cid};
use model::stream_records::{Direction, Outcome, StreamType};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::metering::{Meter, Tally, outcome_of};
use crate::rechunk::rechunk;
use crate::upload::channel;
use crate::ws::MAX_FRAME;
use crate::ws::error_message;

/// Transfers (gets and adds together) one connection may have open at once.
pub const MAX_TRANSFERS: usize = 8;

/// Payload bytes per binary frame of a download (the session queues 32 messages: 2 MiB).
const CHUNK: usize = 64 * 1024;

/// A message of the socket: a command and its arguments.
#[derive(Deserialize)]
pub struct Command {
    command: Option<String>,
    request_id: Option<Value>,
    cid: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
    transfer_id: Option<u32>,
    filename: Option<String>,
    content_type: Option<String>,
    cid_version: Option<u8>,
    raw_leaves: Option<bool>,
    chunker: Option<String>,
    pin: Option<bool>,
}

/// A text message as a command, or the `error` message to answer.
pub fn read_command(text: &str) -> Result<Command, Value> {
    let value =
        serde_json::from_str::<Value>(text).map_err(|e| error_message("invalid_json", format!("not JSON: {e}")))?;
    serde_json::from_value::<Command>(value).map_err(|e| error_message("invalid_command", e.to_string()))
}

/// Puts the transfer id in front of a payload.
fn frame(transfer_id: u32, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    out.put_u32(transfer_id);
    out.put_slice(payload);
    out.freeze()
}

fn with_request_id(mut reply: Value, request_id: &Option<Value>) -> Value {
    if let Some(id) = request_id {
        reply["request_id"] = id.clone();
    }
    reply
}

fn api_error(e: impl Into<ApiError>) -> Value {
    let e = e.into();
    error_message(e.code, e.message)
}

/// An upload in progress: where its frames go, and what counts them.
struct Upload {
    sender: crate::upload::PieceSender,
    tally: Tally,
    result: tokio::task::JoinHandle<model::Result<model::content::ContentRecord>>,
    request_id: Option<Value>,
}

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, messages) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(serve(req, state, session, crate::ws::aggregated(messages)));
    Ok(response)
}

async fn send(session: &mut Session, value: Value) -> bool {
    session.text(value.to_string()).await.is_ok()
}

async fn serve(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut session: Session,
    mut messages: actix_ws::AggregatedMessageStream,
) {
    let next_id = AtomicU32::new(1);
    let active_gets = Arc::new(AtomicUsize::new(0));
    let mut uploads: HashMap<u32, Upload> = HashMap::new();
    let idle = state.limits.body_idle_timeout;
    loop {
        let next = if uploads.is_empty() {
            messages.next().await
        } else {
            match tokio::time::timeout(idle, messages.next()).await {
                Ok(next) => next,
                Err(_) => {
                    // Uploads open and nothing for `idle`: each fails as stalled (nothing of it
                    // becomes visible); the socket stays open for the client's next command.
                    if !fail_stalled_uploads(&mut session, &mut uploads, idle).await {
                        break;
                    }
                    continue;
                }
            }
        };
        let Some(message) = next else { break };
        match message {
            Ok(AggregatedMessage::Text(text)) => {
                let command = match read_command(&text) {
                    Ok(command) => command,
                    Err(reply) => {
                        send(&mut session, reply).await;
                        continue;
                    }
                };
                let request_id = command.request_id.clone();
                let reply = match command.command.as_deref() {
                    None => Some(error_message("missing_command", "every message needs a \"command\"")),
                    Some("ping") => Some(json!({"type": "pong"})),
                    Some("close") => {
                        send(&mut session, with_request_id(json!({"type": "goodbye"}), &request_id)).await;
                        break;
                    }
                    Some("get") if uploads.len() + active_gets.load(Ordering::Relaxed) >= MAX_TRANSFERS => {
                        Some(too_many_transfers())
                    }
                    Some("get") => {
                        let id = next_transfer_id(&next_id);
                        let meter = Meter::for_request(
                            &req,
                            &state,
                            StreamType::Websocket,
                            Direction::Outbound,
                            format!("/ws/bidirectional/get/{id}"),
                        );
                        active_gets.fetch_add(1, Ordering::Relaxed);
                        let active = active_gets.clone();
                        let (state, session) = (state.clone(), session.clone());
                        actix_web::rt::spawn(async move {
                            download(state, session, command, id, meter).await;
                            active.fetch_sub(1, Ordering::Relaxed);
                        });
                        None
                    }
                    Some("add") if uploads.len() + active_gets.load(Ordering::Relaxed) >= MAX_TRANSFERS => {
                        Some(too_many_transfers())
                    }
                    Some("add") => Some(start_upload(&req, &state, &mut uploads, &next_id, command)),
                    Some("complete") => finish_upload(&mut uploads, &command).await,
                    Some("pin") => Some(pin(&state, &command).await),
                    Some(other) => Some(error_message("unknown_command", format!("unknown command {other:?}"))),
                };
                if let Some(reply) = reply
                    && !send(&mut session, with_request_id(reply, &request_id)).await
                {
                    break;
                }
            }
            Ok(AggregatedMessage::Binary(bytes)) => {
                if let Some(reply) = upload_frame(&mut uploads, bytes, state.limits.max_upload_bytes).await
                    && !send(&mut session, reply).await
                {
                    break;
                }
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = session.pong(&bytes).await;
            }
            Err(actix_ws::ProtocolError::Overflow) => {
                send(
                    &mut session,
                    error_message("frame_too_large", format!("a frame is larger than {MAX_FRAME} bytes")),
                )
                .await;
                abort_uploads(&mut uploads).await;
                let _ = session.close(Some(CloseCode::Size.into())).await;
                return;
            }
            Ok(AggregatedMessage::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    abort_uploads(&mut uploads).await;
    let _ = session.close(Some(CloseCode::Normal.into())).await;
}

/// Fails every open upload as stalled and tells the client; false when the client is gone.
async fn fail_stalled_uploads(session: &mut Session, uploads: &mut HashMap<u32, Upload>, idle: Duration) -> bool {
    for (id, upload) in std::mem::take(uploads) {
        let _ = upload.sender.send(Err(model::Error::InputStalled(idle))).await;
        if !send(session, upload_result(id, upload).await).await {
            return false;
        }
    }
    true
}

/// Fails every unfinished upload, so none of them becomes visible.
async fn abort_uploads(uploads: &mut HashMap<u32, Upload>) {
    for (_, upload) in uploads.drain() {
        let _ = upload
            .sender
            .send(Err(model::Error::Input("the connection closed before complete".into())))
            .await;
        let _ = upload.result.await;
    }
}

async fn download(state: web::Data<AppState>, mut session: Session, command: Command, id: u32, mut meter: Meter) {
    let request_id = command.request_id.clone();
    let fail = |mut reply: Value| {
        reply["transfer_id"] = json!(id);
        with_request_id(reply, &request_id)
    };
    let prepared = async {
        let cid = parse_cid(
            command
                .cid
                .as_deref()
                .ok_or_else(|| ApiError::bad_parameter("cid", "get needs a cid"))?,
        )?;
        let stat = state.content.stat(&cid).await?;
        if stat.kind != NodeKind::File {
            return Err(ApiError::from(model::Error::WrongKind {
                cid,
                expected: "file",
                actual: stat.kind.as_str(),
            }));
        }
        let range = ByteRange::new(command.offset.unwrap_or(0), command.length);
        let (start, end) = range.clamp(&cid, stat.size)?;
        let body = state.content.read(&cid, range).await?;
        Ok::<_, ApiError>((cid, stat.size, start, end, body))
    };
    let (cid, size, start, end, body) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            send(&mut session, fail(api_error(e))).await;
            return;
        }
    };
    meter.path = format!("/ipfs/{cid}");
    meter.chunk_size = CHUNK as u64;
    let mut tally = Tally::start(meter);
    let metadata = json!({"type": "metadata", "transfer_id": id, "cid": cid.to_string(), "size": size, "offset": start, "length": end - start});
    if !send(&mut session, with_request_id(metadata, &request_id)).await {
        return;
    }
    let started = Instant::now();
    let mut chunks = Box::pin(rechunk(body, CHUNK));
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                // Whole messages only: several transfers share the socket, and fragments of two
                // messages must not interleave. Small chunks keep the shared queue small instead.
                if session.binary(frame(id, &chunk)).await.is_err() {
                    return;
                }
                tally.count(chunk.len());
            }
            Err(e) => {
                tally.finish(outcome_of(&e));
                send(&mut session, fail(api_error(e))).await;
                return;
            }
        }
    }
    tally.finish(Outcome::Ok);
    let complete = json!({
        "type": "complete", "transfer_id": id, "bytes_sent": tally.bytes(), "chunks": tally.chunks(),
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    send(&mut session, with_request_id(complete, &request_id)).await;
}

fn too_many_transfers() -> Value {
    error_message(
        "too_many_transfers",
        format!("at most {MAX_TRANSFERS} transfers may be open at once on one connection"),
    )
}

/// The next transfer id (ids wrap after 2^32 transfers).
fn next_transfer_id(next: &AtomicU32) -> u32 {
    next.fetch_add(1, Ordering::Relaxed)
}

fn start_upload(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    uploads: &mut HashMap<u32, Upload>,
    next_id: &AtomicU32,
    command: Command,
) -> Value {
    let Some(filename) = command.filename.filter(|f| !f.is_empty() && f.len() <= 255) else {
        return error_message("invalid_parameter", "add needs a filename of 1 to 255 characters");
    };
    let options = match ImportOptions::new(command.cid_version, command.raw_leaves, command.chunker.as_deref()) {
        Ok(options) => options,
        Err(e) => return api_error(e),
    };
    // After a wrap, skip ids still held by open uploads: replacing one would drop its sender.
    let mut id = next_transfer_id(next_id);
    while uploads.contains_key(&id) {
        id = next_transfer_id(next_id);
    }
    let (sender, input) = channel(&state.upload_buffers);
    let request = AddRequest {
        options,
        name: Some(filename.clone()),
        content_type: command.content_type,
        pin: command.pin.unwrap_or(true),
        limit: Some(state.limits.max_upload_bytes),
    };
    let content = state.content.clone();
    let result = actix_web::rt::spawn(async move { content.add(input, request).await });
    let meter = Meter::for_request(
        req,
        state,
        StreamType::Websocket,
        Direction::Inbound,
        format!("/ws/bidirectional/add/{filename}"),
    );
    uploads.insert(
        id,
        Upload {
            sender,
            tally: Tally::start(meter),
            result,
            request_id: command.request_id,
        },
    );
    json!({"type": "ready", "transfer_id": id, "filename": filename})
}

async fn upload_frame(uploads: &mut HashMap<u32, Upload>, bytes: Bytes, limit: u64) -> Option<Value> {
    if bytes.len() < 4 {
        return Some(error_message(
            "invalid_frame",
            "a binary frame starts with its 4-byte transfer id",
        ));
    }
    let id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let Some(upload) = uploads.get_mut(&id) else {
        return Some(error_message(
            "unknown_transfer",
            format!("no upload has transfer_id {id}"),
        ));
    };
    let payload = bytes.slice(4..);
    upload.tally.count(payload.len());
    let piece = if upload.tally.bytes() > limit {
        Err(model::Error::TooLarge { limit })
    } else {
        Ok(payload)
    };
    let over = piece.is_err();
    if upload.sender.send(piece).await.is_err() || over {
        // The import stopped: report why, and forget the transfer.
        let upload = uploads.remove(&id).expect("present");
        return Some(upload_result(id, upload).await);
    }
    None
}

async fn finish_upload(uploads: &mut HashMap<u32, Upload>, command: &Command) -> Option<Value> {
    let Some(id) = command.transfer_id else {
        return Some(error_message(
            "invalid_parameter",
            "complete needs the transfer_id of an add",
        ));
    };
    let Some(upload) = uploads.remove(&id) else {
        return Some(error_message(
            "unknown_transfer",
            format!("no upload has transfer_id {id}"),
        ));
    };
    Some(upload_result(id, upload).await)
}

async fn upload_result(id: u32, mut upload: Upload) -> Value {
    drop(upload.sender);
    let reply = match upload.result.await {
        Ok(Ok(record)) => {
            upload.tally.finish(Outcome::Ok);
            json!({"type": "result", "transfer_id": id, "success": true, "cid": record.cid.to_string(), "size": record.size})
        }
        Ok(Err(e)) => {
            upload.tally.finish(outcome_of(&e));
            let e = ApiError::from(e);
            json!({"type": "result", "transfer_id": id, "success": false, "error": e.code, "message": e.message})
        }
        Err(e) => {
            json!({"type": "result", "transfer_id": id, "success": false, "error": "store_error", "message": e.to_string()})
        }
    };
    with_request_id(reply, &upload.request_id)
}

async fn pin(state: &AppState, command: &Command) -> Value {
    let cid = match command.cid.as_deref().map(parse_cid) {
        None => return error_message("invalid_parameter", "pin needs a cid"),
        Some(Err(e)) => return api_error(e),
        Some(Ok(cid)) => cid,
    };
    match state.content.pin(&cid).await {
        Ok(()) => json!({"type": "pin_result", "cid": cid.to_string(), "success": true}),
        Err(e) => {
            let e = ApiError::from(e);
            json!({"type": "pin_result", "cid": cid.to_string(), "success": false, "error": e.code, "message": e.message})
        }
    }
}
