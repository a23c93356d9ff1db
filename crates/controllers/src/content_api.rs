//! The REST API for content under `/api/v1`: add, list, stat, remove, import CARs.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use model::content::{AddRequest, ContentRecord, ImportOptions, NodeStat, Page, parse_cid};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;
use crate::metering::Meter;
use crate::upload::body_stream;
use model::stream_records::{Direction, StreamType};

/// Options of an upload, as `ipfs add` takes them.
#[derive(Debug, Default, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddQuery {
    /// 0 (Kubo's default) or 1 (raw leaves unless `raw_leaves=false`).
    #[validate(range(max = 1, message = "must be 0 or 1"))]
    #[param(minimum = 0, maximum = 1)]
    pub cid_version: Option<u8>,
    pub raw_leaves: Option<bool>,
    /// `size-N`, N from 1024 to 1048576.
    #[validate(length(max = 32, message = "must be size-N"))]
    #[param(max_length = 32)]
    pub chunker: Option<String>,
    /// Keep the content through garbage collection (default true).
    pub pin: Option<bool>,
    /// A name to remember the content by (default: the multipart part's file name).
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[param(min_length = 1, max_length = 255)]
    pub name: Option<String>,
}

/// Content the server holds.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"cid": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "size": 12, "name": "hello.txt",
    "content_type": "text/plain", "cid_version": 0, "blocks": 1, "pinned": true, "created_at_ms": 1_795_595_467_827_i64}))]
pub struct ContentItem {
    pub cid: String,
    pub size: u64,
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub cid_version: u8,
    pub blocks: u64,
    pub pinned: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl From<ContentRecord> for ContentItem {
    fn from(r: ContentRecord) -> Self {
        Self {
            cid: r.cid.to_string(),
            size: r.size,
            name: r.name,
            content_type: r.content_type,
            cid_version: r.cid_version,
            blocks: r.blocks,
            pinned: r.pinned,
            created_at_ms: r.created_at_ms,
        }
    }
}

/// Adds a file: the raw request body, or the first file part of a multipart body. The CID equals
/// Kubo's `ipfs add` for the same bytes and options.
#[utoipa::path(
    post,
    path = "/api/v1/content",
    tag = "content",
    params(AddQuery),
    request_body(description = "The file's bytes", content(
        (crate::openapi::Binary = "application/octet-stream"),
        (crate::openapi::UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Stored", body = ContentItem),
        (status = 400, description = "A bad parameter (named in `field`) or a failed upload", body = crate::error::ErrorBody),
        (status = 413, description = "Larger than the server's upload limit; nothing stored", body = crate::error::ErrorBody),
    ),
)]
pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    query: Checked<AddQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let options = ImportOptions::new(query.cid_version, query.raw_leaves, query.chunker.as_deref())?;
    let limit = state.limits.max_upload_bytes;
    let meter = Meter::for_request(
        &req,
        &state,
        StreamType::Http,
        Direction::Inbound,
        "/api/v1/content".into(),
    );
    let upload = body_stream(
        &req,
        payload,
        limit,
        &state.upload_buffers,
        state.limits.body_idle_timeout,
    )
    .await?;
    let input = meter.wrap(upload.stream);
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| is_media_type(t))
        .map(str::to_owned);
    let request = AddRequest {
        options,
        // `?name=` first, else the multipart part's file name (at most 255 characters of it).
        name: query
            .name
            .clone()
            .or_else(|| upload.file_name.map(|name| name.chars().take(255).collect())),
        content_type,
        pin: query.pin.unwrap_or(true),
        limit: Some(limit),
    };
    let added = state.content.add(input, request).await?;
    Ok(HttpResponse::Created().json(ContentItem::from(added)))
}

/// Whether a request's Content-Type describes the content (not the request's own encoding).
fn is_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    !essence.is_empty()
        && !essence.starts_with("multipart/")
        && essence != "application/octet-stream"
        && essence != "application/x-www-form-urlencoded"
}

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Records to skip (at most 2^63 - 1, as the document's int64 says).
    #[serde(default)]
    #[validate(range(max = 9223372036854775807u64, message = "must be at most 9223372036854775807"))]
    #[param(minimum = 0, maximum = 9223372036854775807u64)]
    pub offset: u64,
    /// Records to return, 1 to 1000 (default 100).
    #[validate(range(min = 1, max = 1000, message = "must be between 1 and 1000"))]
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default = "default_limit")]
    pub limit: u64,
}

fn default_limit() -> u64 {
    100
}

/// A page of content records, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContentPage {
    pub items: Vec<ContentItem>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
}

/// Content added to this server, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/content",
    tag = "content",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of records", body = ContentPage),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ),
)]
pub async fn list(query: Checked<ListQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (records, total) = state
        .content
        .records(Page {
            offset: query.offset,
            limit: query.limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ContentPage {
        items: records.into_iter().map(ContentItem::from).collect(),
        total,
        offset: query.offset,
        limit: query.limit,
    }))
}

/// A node's kind and sizes, and what the server recorded about it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContentStat {
    pub cid: String,
    /// `file`, `directory` or `symlink`.
    pub kind: &'static str,
    pub size: u64,
    /// Bytes of the whole DAG.
    pub dag_size: u64,
    pub links: usize,
    /// Present when the content was added or pinned here.
    pub record: Option<ContentItem>,
}

impl ContentStat {
    fn new(stat: NodeStat, record: Option<ContentRecord>) -> Self {
        Self {
            cid: stat.cid.to_string(),
            kind: stat.kind.as_str(),
            size: stat.size,
            dag_size: stat.dag_size,
            links: stat.links,
            record: record.map(ContentItem::from),
        }
    }
}

/// The kind and sizes of any stored CID, with its record when it was added here.
#[utoipa::path(
    get,
    path = "/api/v1/content/{cid}",
    tag = "content",
    params(("cid" = String, Path, description = "CID", example = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")),
    responses(
        (status = 200, description = "Found", body = ContentStat),
        (status = 400, description = "Malformed CID", body = crate::error::ErrorBody),
        (status = 404, description = "Not stored", body = crate::error::ErrorBody),
    ),
)]
pub async fn stat(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cid = parse_cid(&path)?;
    let stat = state.content.stat(&cid).await?;
    let record = state.content.record(&cid).await?;
    Ok(HttpResponse::Ok().json(ContentStat::new(stat, record)))
}

/// Unpins and forgets content; its blocks are freed by the next garbage collection.
#[utoipa::path(
    delete,
    path = "/api/v1/content/{cid}",
    tag = "content",
    params(("cid" = String, Path, description = "CID")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed CID", body = crate::error::ErrorBody),
        (status = 404, description = "Not added to this server", body = crate::error::ErrorBody),
    ),
)]
pub async fn remove(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cid = parse_cid(&path)?;
    state.content.remove(&cid).await.map_err(|e| match e {
        model::Error::NotFound(cid) => ApiError::not_found(format!("{cid} was not added to this server")),
        other => other.into(),
    })?;
    let caller = crate::access::caller_of(&req);
    crate::access::audit(
        &*state.notifier,
        "content_deleted",
        &caller.name,
        &cid.to_string(),
        "done",
    );
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CarQuery {
    /// Pin the CAR's roots (default true).
    pub pin: Option<bool>,
}

/// What a CAR import stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CarImported {
    pub roots: Vec<String>,
    pub blocks: u64,
    pub bytes: u64,
}

/// Imports a CAR v1: every block is verified and the DAG checked complete before anything is visible.
#[utoipa::path(
    post,
    path = "/api/v1/car",
    tag = "content",
    params(CarQuery),
    request_body(description = "A CAR v1 stream", content((crate::openapi::Binary = "application/vnd.ipld.car"))),
    responses(
        (status = 201, description = "Imported", body = CarImported),
        (status = 400, description = "Not a CAR, a block that does not match its CID, or missing blocks", body = crate::error::ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = crate::error::ErrorBody),
    ),
)]
pub async fn import_car(
    req: HttpRequest,
    payload: web::Payload,
    query: Checked<CarQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meter = Meter::for_request(&req, &state, StreamType::Http, Direction::Inbound, "/api/v1/car".into());
    let input = meter.wrap(
        body_stream(
            &req,
            payload,
            state.limits.max_upload_bytes,
            &state.upload_buffers,
            state.limits.body_idle_timeout,
        )
        .await?
        .stream,
    );
    let imported = state.content.import_car(input, query.pin.unwrap_or(true)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(CarImported {
        roots: imported.roots.iter().map(ToString::to_string).collect(),
        blocks: imported.blocks,
        bytes: imported.bytes,
    }))
}
