//! REST control of WebRTC playback: streams (`/api/v1/webrtc/streams`) and connections
//! (`/api/v1/webrtc/connections`), with every request field validated so that a 400 names each
//! bad one. Limits answer 429 (per stream, number of streams) or 503 (the server is full).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use cid::Cid;
use model::media::playback::BufferSettings;
use model::webrtc::{IceServer, Quality, StreamSpec, WebRtcService};
use serde::{Deserialize, Serialize};
use serde_json::json;
use validator::{Validate, ValidationError};

use crate::AppState;
use crate::error::ApiError;

/// The WebRTC service, or 503 when the server runs without it.
pub(crate) fn service(state: &AppState) -> Result<Arc<dyn WebRtcService>, ApiError> {
    state.webrtc.clone().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "webrtc_disabled",
            "WebRTC playback is not enabled on this server",
        )
    })
}

pub(crate) fn valid_cid(value: &str) -> Result<(), ValidationError> {
    Cid::from_str(value)
        .map(|_| ())
        .map_err(|e| ValidationError::new("cid").with_message(format!("not a valid CID ({e})").into()))
}

pub(crate) fn valid_quality(value: &str) -> Result<(), ValidationError> {
    Quality::parse(value)
        .map(|_| ())
        .ok_or_else(|| ValidationError::new("quality").with_message("must be one of low, medium, high, auto".into()))
}

/// A rendition is one fixed encoding: `auto` names none.
fn valid_rendition_quality(value: &str) -> Result<(), ValidationError> {
    match Quality::parse(value) {
        Some(Quality::Auto) | None => Err(ValidationError::new("quality")
            .with_message("must be one of low, medium, high (a rendition is one encoding)".into())),
        Some(_) => Ok(()),
    }
}

fn valid_address(value: &str) -> Result<(), ValidationError> {
    let host_name = !value.is_empty()
        && value.len() <= 253
        && value
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if IpAddr::from_str(value).is_ok() || host_name {
        Ok(())
    } else {
        Err(ValidationError::new("address").with_message("must be an IP address or a host name".into()))
    }
}

fn valid_ice_urls(urls: &[String]) -> Result<(), ValidationError> {
    if urls.is_empty() {
        return Err(ValidationError::new("urls").with_message("needs at least one URL".into()));
    }
    for url in urls {
        let scheme_ok = ["stun:", "turn:", "turns:"].iter().any(|s| url.starts_with(s));
        let rest = url.split_once(':').map_or("", |(_, rest)| rest);
        if !scheme_ok || rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ValidationError::new("urls")
                .with_message(format!("{url:?} is not a stun:, turn: or turns: URL").into()));
        }
    }
    Ok(())
}

/// A STUN/TURN server for the stream's clients.
#[derive(Debug, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IceServerRequest {
    /// `stun:`, `turn:` or `turns:` URLs.
    #[validate(custom(function = "valid_ice_urls"))]
    pub urls: Vec<String>,
    #[validate(length(max = 256, message = "must be at most 256 characters"))]
    #[schema(max_length = 256)]
    pub username: Option<String>,
    #[validate(length(max = 256, message = "must be at most 256 characters"))]
    #[schema(max_length = 256)]
    pub credential: Option<String>,
}

/// Another encoding of the stream's media.
#[derive(Debug, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenditionRequest {
    /// `low`, `medium` or `high`.
    #[validate(custom(function = "valid_rendition_quality"))]
    pub quality: String,
    #[validate(custom(function = "valid_cid"))]
    pub cid: String,
}

/// A WebRTC stream to create (the seeds' `StreamRequest`, validated).
#[derive(Debug, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "quality": "auto", "buffer_size": 30, "prefetch_threshold": 0.5}))]
pub struct StreamRequest {
    /// The media to play.
    #[validate(custom(function = "valid_cid"))]
    pub cid: String,
    /// The host clients reach this server at, used in the returned URLs (default: the request's host).
    #[validate(custom(function = "valid_address"))]
    pub address: Option<String>,
    /// The port clients reach this server at, used in the returned URLs.
    #[validate(range(min = 1, max = 65535, message = "must be between 1 and 65535"))]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u32>,
    /// `low`, `medium`, `high` or `auto` (default).
    #[validate(custom(function = "valid_quality"))]
    pub quality: Option<String>,
    #[validate(nested)]
    pub ice_servers: Option<Vec<IceServerRequest>>,
    /// Keep a per-second record of the stream's counters, returned with the stream.
    pub benchmark: Option<bool>,
    /// Frames the buffer holds (1-120, default 30).
    #[validate(range(min = 1, max = 120, message = "must be between 1 and 120"))]
    #[schema(minimum = 1, maximum = 120)]
    pub buffer_size: Option<u32>,
    /// Fill level at which the buffer is refilled (0.1-0.9, default 0.5).
    #[validate(range(min = 0.1, max = 0.9, message = "must be between 0.1 and 0.9"))]
    #[schema(minimum = 0.1, maximum = 0.9)]
    pub prefetch_threshold: Option<f64>,
    /// Read the media by ranges as it plays (default true) instead of loading it first.
    pub use_progressive_loading: Option<bool>,
    /// Let the buffer's target and threshold follow underflows and jitter (default true); false
    /// keeps them as set.
    pub adaptive_buffer: Option<bool>,
    /// Other encodings of the same media, for quality presets and `auto`.
    #[validate(nested, length(max = 3, message = "at most one per quality (3)"))]
    #[schema(max_items = 3)]
    pub renditions: Option<Vec<RenditionRequest>>,
}

/// Where clients go to play a created stream.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamCreated {
    pub stream_id: String,
    /// `GET` this WebSocket and send `offer_request {stream_id}`.
    pub signaling_url: String,
    /// `POST` an SDP offer here (WHEP).
    pub whep_url: String,
    /// A page that plays the stream.
    pub player_url: String,
    #[schema(value_type = Object)]
    pub stream: model::webrtc::StreamInfo,
}

/// `scheme://host[:port]` for URLs given back to the client.
fn base_urls(req: &HttpRequest, address: Option<&str>, port: Option<u32>) -> (String, String) {
    let info = req.connection_info();
    let host = match (address, port) {
        (Some(address), Some(port)) if address.contains(':') => format!("[{address}]:{port}"),
        (Some(address), Some(port)) => format!("{address}:{port}"),
        (Some(address), None) => address.to_owned(),
        (None, Some(port)) => {
            let name = info.host().rsplit_once(':').map_or(info.host(), |(name, _)| name);
            format!("{name}:{port}")
        }
        (None, None) => info.host().to_owned(),
    };
    let secure = info.scheme() == "https";
    (
        format!("{}://{host}", if secure { "https" } else { "http" }),
        format!("{}://{host}", if secure { "wss" } else { "ws" }),
    )
}

fn parse_cid(value: &str) -> Cid {
    Cid::from_str(value).expect("validated")
}

/// Create a WebRTC stream: checks every rendition is playable media.
#[utoipa::path(post, path = "/api/v1/webrtc/streams", tag = "webrtc", request_body = StreamRequest,
    responses((status = 201, body = StreamCreated), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 415, description = "unsupported media, named", body = crate::error::ErrorBody),
              (status = 429, description = "stream limit reached", body = crate::error::ErrorBody)))]
pub async fn create_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: crate::extract::Json<StreamRequest>,
) -> Result<HttpResponse, ApiError> {
    body.validate()?;
    let webrtc = service(&state)?;
    let request = body.into_inner();
    let spec = StreamSpec {
        cid: parse_cid(&request.cid),
        renditions: request
            .renditions
            .iter()
            .flatten()
            .map(|r| (Quality::parse(&r.quality).expect("validated"), parse_cid(&r.cid)))
            .collect(),
        quality: request
            .quality
            .as_deref()
            .and_then(Quality::parse)
            .unwrap_or(Quality::Auto),
        ice_servers: request
            .ice_servers
            .iter()
            .flatten()
            .map(|s| IceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        buffer: BufferSettings {
            buffer_size: request.buffer_size.unwrap_or(30) as usize,
            prefetch_threshold: request.prefetch_threshold.unwrap_or(0.5),
            adaptive: request.adaptive_buffer.unwrap_or(true),
        },
        progressive: request.use_progressive_loading.unwrap_or(true),
        benchmark: request.benchmark.unwrap_or(false),
    };
    let stream = webrtc.create_stream(spec).await?;
    let (http, ws) = base_urls(&req, request.address.as_deref(), request.port);
    let id = stream.stream_id.clone();
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/webrtc/streams/{id}")))
        .json(StreamCreated {
            signaling_url: format!("{ws}/ws/webrtc?stream_id={id}"),
            whep_url: format!("{http}/whep/streams/{id}"),
            player_url: format!("{http}/player?stream_id={id}"),
            stream_id: id,
            stream,
        }))
}

/// The created streams: this instance's, then those of the other instances sharing its database
/// (`"state": "elsewhere"`, with their `instance`), which play here too.
#[utoipa::path(get, path = "/api/v1/webrtc/streams", tag = "webrtc", responses((status = 200, description = "streams")))]
pub async fn list_streams(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let webrtc = service(&state)?;
    let mut streams: Vec<serde_json::Value> = webrtc
        .streams()
        .iter()
        .map(|stream| serde_json::to_value(stream).expect("stream info serializes"))
        .collect();
    streams.extend(webrtc.streams_elsewhere());
    Ok(HttpResponse::Ok().json(json!({"count": streams.len(), "streams": streams})))
}

/// One stream, with its playback counters (and benchmark samples if asked for).
#[utoipa::path(get, path = "/api/v1/webrtc/streams/{stream_id}", tag = "webrtc",
    responses((status = 200, description = "the stream"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_stream(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let webrtc = service(&state)?;
    match webrtc.stream(&path) {
        Ok(stream) => Ok(HttpResponse::Ok().json(stream)),
        Err(unknown) => {
            let elsewhere = webrtc
                .streams_elsewhere()
                .into_iter()
                .find(|stream| stream["stream_id"] == path.as_str());
            match elsewhere {
                Some(stream) => Ok(HttpResponse::Ok().json(stream)),
                None => Err(unknown.into()),
            }
        }
    }
}

/// Stop a stream and close its connections (on the instance that holds it).
#[utoipa::path(delete, path = "/api/v1/webrtc/streams/{stream_id}", tag = "webrtc",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the stream belongs to another instance, named", body = crate::error::ErrorBody)))]
pub async fn delete_stream(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    service(&state)?.delete_stream(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Open WebRTC connections.
#[utoipa::path(get, path = "/api/v1/webrtc/connections", tag = "webrtc", responses((status = 200, description = "connections")))]
pub async fn list_connections(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let connections = service(&state)?.connections();
    Ok(HttpResponse::Ok().json(json!({"connections": connections, "count": connections.len()})))
}

/// A connection's buffer counters and transport statistics (RTT, loss, jitter, estimate).
#[utoipa::path(get, path = "/api/v1/webrtc/connections/{pc_id}/stats", tag = "webrtc",
    responses((status = 200, description = "statistics"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn connection_stats(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service(&state)?.stats(&path).await?))
}

/// Close a connection.
#[utoipa::path(post, path = "/api/v1/webrtc/connections/{pc_id}/close", tag = "webrtc",
    responses((status = 200, description = "closed"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn close_connection(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    service(&state)?.close(&path).await?;
    Ok(HttpResponse::Ok().json(json!({"pc_id": path.into_inner(), "closed": true})))
}

/// Close every connection.
#[utoipa::path(post, path = "/api/v1/webrtc/connections/close-all", tag = "webrtc", responses((status = 200, description = "how many closed")))]
pub async fn close_all(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let closed = service(&state)?.close_all().await;
    let caller = crate::access::caller_of(&req);
    crate::access::audit(
        &*state.notifier,
        "close_all",
        &caller.name,
        &format!("{closed} connections"),
        "done",
    );
    Ok(HttpResponse::Ok().json(json!({"closed": closed})))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityRequest {
    /// `low`, `medium`, `high` or `auto`.
    #[validate(custom(function = "valid_quality"))]
    pub quality: String,
}

/// Set a connection's quality preset.
#[utoipa::path(post, path = "/api/v1/webrtc/connections/{pc_id}/quality", tag = "webrtc", request_body = QualityRequest,
    responses((status = 200, description = "the preset and the rendition now sent"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn set_quality(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: crate::extract::Json<QualityRequest>,
) -> Result<HttpResponse, ApiError> {
    body.validate()?;
    let quality = Quality::parse(&body.quality).expect("validated");
    Ok(HttpResponse::Ok().json(service(&state)?.set_quality(&path, quality).await?))
}
