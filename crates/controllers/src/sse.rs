//! Server-Sent Events: `GET /sse/stream/{cid}` sends a file as `metadata`, base64 `chunk` events and
//! `complete` (or `error`). Each event's id is the byte offset where the next chunk starts, so a client
//! that reconnects with `Last-Event-ID` resumes where it stopped.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use model::content::ByteRange;
use model::stream_records::{Direction, Outcome, StreamType};
use serde_json::json;
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;
use crate::metering::{Meter, Tally, outcome_of};
use crate::rechunk::rechunk;

#[derive(Debug, serde::Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SseParams {
    /// Bytes per chunk event before base64, 1 KiB to 1 MiB (default 64 KiB).
    #[validate(range(min = 1024, max = 1048576, message = "must be between 1024 and 1048576"))]
    #[param(minimum = 1024, maximum = 1048576)]
    pub chunk_size: Option<u64>,
}

/// One event of the stream, as a client's EventSource sees it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SseEvent {
    /// The byte offset the stream has reached: `Last-Event-ID` resumes from it.
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    event: SseEventName,
    /// `metadata`: `{cid, size, content_type, chunk_size, offset}`; `chunk`: the bytes in base64;
    /// `complete`: `{bytes_sent, chunks}`; `error`: `{error, message}`.
    data: String,
}

/// The events, in the order they come: one `metadata`, `chunk`s, then `complete` or `error`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SseEventName {
    Metadata,
    Chunk,
    Complete,
    Error,
}

fn event(name: &str, id: u64, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"))
}

/// A file as Server-Sent Events; `Last-Event-ID` (a byte offset) resumes.
#[utoipa::path(
    get,
    path = "/sse/stream/{cid}",
    tag = "streaming",
    params(
        ("cid" = String, Path, description = "CID, optionally followed by a path"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume from this byte offset"),
        SseParams,
    ),
    responses(
        (status = 200, description = "metadata, chunk (base64) and complete events", content_type = "text/event-stream", body = SseEvent),
        (status = 204, description = "Last-Event-ID is the end of the file: nothing is left to send"),
        (status = 400, description = "Malformed CID, parameter or Last-Event-ID", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown CID", body = crate::error::ErrorBody),
    ),
)]
pub async fn stream(
    req: HttpRequest,
    params: Checked<SseParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (cid, stat, segments) =
        crate::content_path::file_at(state.content.as_ref(), req.path(), "/sse/stream/").await?;
    let resume = match req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()))
    {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            return Err(ApiError::bad_parameter(
                "Last-Event-ID",
                "Last-Event-ID must be a byte offset",
            ));
        }
    };
    if resume > 0 && resume >= stat.size {
        // A client reconnecting after `complete` (EventSource does): nothing is left, and 204 tells
        // EventSource to stop reconnecting.
        return Ok(HttpResponse::NoContent().finish());
    }
    let chunk_size = params.chunk_size.unwrap_or(64 * 1024);
    let body = state.content.read(&cid, ByteRange::new(resume, None)).await?;
    let content_type = crate::gateway::content_type(
        state.content.as_ref(),
        &cid,
        stat.size,
        segments.last().map(String::as_str),
    )
    .await?;
    let mut meter = Meter::for_request(&req, &state, StreamType::Sse, Direction::Outbound, req.path().into());
    meter.chunk_size = chunk_size;
    let metadata = json!({
        "cid": cid.to_string(), "size": stat.size, "content_type": content_type, "chunk_size": chunk_size, "offset": resume,
    });
    let events = async_stream::stream! {
        let mut tally = Tally::start(meter);
        let mut offset = resume;
        yield Ok::<Bytes, model::Error>(event("metadata", offset, &metadata.to_string()));
        let mut chunks = Box::pin(rechunk(body, chunk_size as usize));
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => {
                    offset += chunk.len() as u64;
                    tally.count(chunk.len());
                    yield Ok(event("chunk", offset, &base64::engine::general_purpose::STANDARD.encode(&chunk)));
                }
                Err(e) => {
                    tally.finish(outcome_of(&e));
                    let error = ApiError::from(e);
                    yield Ok(event("error", offset, &json!({"error": error.code, "message": error.message}).to_string()));
                    return;
                }
            }
        }
        tally.finish(Outcome::Ok);
        yield Ok(event("complete", offset, &json!({"bytes_sent": tally.bytes(), "chunks": tally.chunks()}).to_string()));
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events))
}
