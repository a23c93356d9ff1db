//! The IPFS path gateway, `GET|HEAD /ipfs/{cid}[/{path}]`, following the path and trustless
//! gateway specs: byte ranges, ETags, immutable caching, raw blocks and CARs, directories.

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt, stream};
use model::content::{
    ByteRange, ByteStream, CarScope, DirEntry, EntityBytes, NodeKind, stored_only, stored_only_stream,
};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;
use crate::metering::Meter;
use crate::range::{self, RangeRequest};
use model::stream_records::{Direction, StreamType};

/// Cache lifetime of immutable responses: what Kubo's gateway sends.
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";
/// Bytes read from the start of a file to sniff its type when its name says nothing.
const SNIFF_LEN: u64 = 512;
pub const RAW_BLOCK: &str = "application/vnd.ipld.raw";
pub const CAR: &str = "application/vnd.ipld.car";

/// Query parameters of the gateway.
#[derive(Debug, Default, Deserialize, validator::Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GatewayQuery {
    /// `raw` (the block) or `car` (the DAG as a CAR); otherwise the deserialized content.
    pub format: Option<String>,
    /// Name to give the download (sets Content-Disposition and the Content-Type guess).
    pub filename: Option<String>,
    /// With `true`, Content-Disposition is `attachment`.
    pub download: Option<bool>,
    /// With format=car: `all` (the whole DAG, the default), `entity` (what it takes to read the
    /// target: a file, a directory node, a HAMT's shards) or `block` (the target's block alone).
    #[serde(rename = "dag-scope")]
    pub dag_scope: Option<String>,
    /// With format=car and dag-scope=entity: `from:to` of a file, both inclusive (negative from
    /// the end, `*` for the end): only the blocks those bytes need.
    #[serde(rename = "entity-bytes")]
    pub entity_bytes: Option<String>,
}

/// The CAR scope the query asks for (ignored unless a CAR is asked for).
fn requested_scope(query: &GatewayQuery) -> Result<CarScope, ApiError> {
    let bytes = match query.entity_bytes.as_deref() {
        Some(text) => Some(EntityBytes::parse(text)?),
        None => None,
    };
    // entity-bytes means something with dag-scope=entity only; elsewhere it is ignored.
    match query.dag_scope.as_deref() {
        None | Some("all") => Ok(CarScope::All),
        Some("entity") => Ok(CarScope::Entity(bytes)),
        Some("block") => Ok(CarScope::Block),
        Some(other) => Err(ApiError::bad_parameter(
            "dag-scope",
            format!("dag-scope {other:?} is not all, entity or block"),
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Content,
    Raw,
    Car,
}

fn requested_format(query: &GatewayQuery, headers: &HeaderMap) -> Result<Format, ApiError> {
    match query.format.as_deref() {
        Some("raw") => return Ok(Format::Raw),
        Some("car") => return Ok(Format::Car),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "format",
                format!("format {other:?} is not raw or car"),
            ));
        }
        None => {}
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let wants = |mime: &str| {
        accept
            .split(',')
            .any(|part| part.trim().split(';').next() == Some(mime))
    };
    Ok(if wants(RAW_BLOCK) {
        Format::Raw
    } else if wants(CAR) {
        Format::Car
    } else {
        Format::Content
    })
}

/// Content by CID and path, as the IPFS path and trustless gateway specs say: a file (byte ranges
/// per RFC 9110), a directory (index.html, else a listing), a raw block or a CAR.
#[utoipa::path(
    get,
    path = "/ipfs/{cid}/{path}",
    tag = "gateway",
    params(
        ("cid" = String, Path, description = "Root CID (CIDv0 or CIDv1)", example = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"),
        ("path" = String, Path, description = "Path inside the root's DAG; may be empty or contain '/'"),
        ("Range" = Option<String>, Header, description = "Byte ranges, e.g. bytes=0-1023"),
        ("If-None-Match" = Option<String>, Header, description = "ETag from an earlier reply"),
        ("Accept" = Option<String>, Header, description = "application/vnd.ipld.raw, application/vnd.ipld.car or application/json (directories)"),
        ("Cache-Control" = Option<String>, Header, description = "only-if-cached: answer from the store alone, never from upstream gateways (504 when a block is not stored); other directives are ignored"),
        GatewayQuery,
    ),
    responses(
        (status = 200, description = "The content (or listing, block, CAR)", content(
            (crate::openapi::Binary = "application/octet-stream"),
            (Listing = "application/json"),
        )),
        (status = 206, description = "Part of a file; several ranges come as multipart/byteranges", content_type = "application/octet-stream", body = crate::openapi::Binary),
        (status = 301, description = "A directory with index.html asked without its trailing slash"),
        (status = 304, description = "If-None-Match matched"),
        (status = 400, description = "Malformed CID or parameter", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown CID or path", body = crate::error::ErrorBody),
        (status = 416, description = "No range inside the content", body = crate::error::ErrorBody),
        (status = 504, description = "Cache-Control: only-if-cached, and a block the answer needs is not stored here", body = crate::error::ErrorBody),
    ),
)]
pub async fn get(
    req: HttpRequest,
    query: Checked<GatewayQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !only_if_cached(&req) {
        return answer(&req, &query, &state, false).await;
    }
    // Another instance asking what this one stores (RFC 9111 5.2.1.7): a block missing here
    // is 504, and no upstream is asked, so instances that list each other never go round in a ring.
    match stored_only(answer(&req, &query, &state, true)).await {
        Err(error) if error.status == StatusCode::NOT_FOUND => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "not_stored",
            format!("only-if-cached: {}", error.message),
        )),
        other => other,
    }
}

/// Whether the request carries `Cache-Control: only-if-cached`.
fn only_if_cached(req: &HttpRequest) -> bool {
    req.headers().get_all(header::CACHE_CONTROL).any(|value| {
        value.to_str().is_ok_and(|directives| {
            directives
                .split(',')
                .any(|directive| directive.trim().eq_ignore_ascii_case("only-if-cached"))
        })
    })
}

async fn answer(
    req: &HttpRequest,
    query: &GatewayQuery,
    state: &web::Data<AppState>,
    stored_only: bool,
) -> Result<HttpResponse, ApiError> {
    let (root, segments) = crate::content_path::parse(req.path(), "/ipfs/")?;
    let format = requested_format(query, req.headers())?;
    let trail = state.content.resolve(&root, &segments).await?;
    let target = *trail.last().expect("a trail holds at least the root");
    let content_path = req.path().to_owned();
    let roots = trail.iter().map(Cid::to_string).collect::<Vec<_>>().join(",");
    let ctx = Context {
        req,
        root,
        name: query.filename.clone().or_else(|| segments.last().cloned()),
        segments,
        state,
        query,
        target,
        content_path,
        roots,
        stored_only,
    };
    match format {
        Format::Raw => ctx.raw_block().await,
        Format::Car => ctx.car().await,
        Format::Content => {
            let stat = state.content.stat(&target).await?;
            match stat.kind {
                NodeKind::File => ctx.file(target, stat.size, ctx.name.clone()).await,
                NodeKind::Directory => ctx.directory().await,
                NodeKind::Symlink => Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "not_supported",
                    format!("{target} is a symlink; the gateway does not follow symlinks"),
                )),
            }
        }
    }
}

/// What every branch of one gateway request needs.
struct Context<'a> {
    req: &'a HttpRequest,
    /// The CID the request path starts from, and the segments after it.
    root: Cid,
    segments: Vec<String>,
    state: &'a web::Data<AppState>,
    query: &'a GatewayQuery,
    target: Cid,
    content_path: String,
    roots: String,
    name: Option<String>,
    /// The body is read from the store alone (`Cache-Control: only-if-cached`).
    stored_only: bool,
}

impl Context<'_> {
    /// Records the body it wraps as an outbound HTTP stream of this request.
    fn metered(&self, body: ByteStream) -> ByteStream {
        let meter = Meter::for_request(
            self.req,
            self.state,
            StreamType::Http,
            Direction::Outbound,
            self.content_path.clone(),
        );
        let body = if self.stored_only {
            stored_only_stream(body)
        } else {
            body
        };
        meter.wrap(body)
    }

    /// Status and the headers every content response carries.
    fn builder(&self, status: StatusCode, etag: &str) -> HttpResponseBuilder {
        let mut builder = HttpResponse::build(status);
        builder
            .insert_header((header::ETAG, etag.to_owned()))
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .insert_header(("X-Ipfs-Path", self.content_path.clone()))
            .insert_header(("X-Ipfs-Roots", self.roots.clone()));
        builder
    }

    fn not_modified(&self, etag: &str) -> Option<HttpResponse> {
        let header = self.req.headers().get(header::IF_NONE_MATCH)?.to_str().ok()?;
        let matches = header
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag));
        matches.then(|| self.builder(StatusCode::NOT_MODIFIED, etag).finish())
    }

    async fn raw_block(&self) -> Result<HttpResponse, ApiError> {
        let etag = format!("\"{}.raw\"", self.target);
        if let Some(response) = self.not_modified(&etag) {
            return Ok(response);
        }
        let block = self.state.content.block(&self.target).await?;
        let name = self
            .query
            .filename
            .clone()
            .unwrap_or_else(|| format!("{}.bin", self.target));
        Ok(self
            .builder(StatusCode::OK, &etag)
            .content_type(RAW_BLOCK)
            .insert_header((header::CONTENT_DISPOSITION, disposition("attachment", &name)))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(block.data().clone()))
    }

    async fn car(&self) -> Result<HttpResponse, ApiError> {
        let scope = requested_scope(self.query)?;
        // The scope is part of the representation: each one has its own tag.
        let etag = match scope {
            CarScope::All => format!("\"{}.car\"", self.target),
            CarScope::Block => format!("\"{}.car.block\"", self.target),
            CarScope::Entity(None) => format!("\"{}.car.entity\"", self.target),
            CarScope::Entity(Some(bytes)) => format!(
                "\"{}.car.entity.{}:{}\"",
                self.target,
                bytes.from,
                bytes.to.map_or("*".to_owned(), |to| to.to_string())
            ),
        };
        if let Some(response) = self.not_modified(&etag) {
            return Ok(response);
        }
        let car = self.metered(self.state.content.export_car(&self.root, &self.segments, scope).await?);
        let name = self
            .query
            .filename
            .clone()
            .unwrap_or_else(|| format!("{}.car", self.target));
        Ok(self
            .builder(StatusCode::OK, &etag)
            .content_type(format!("{CAR}; version=1; order=dfs; dups=n"))
            .insert_header((header::CONTENT_DISPOSITION, disposition("attachment", &name)))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header((header::ACCEPT_RANGES, "none"))
            .streaming(car))
    }

    async fn file(&self, cid: Cid, size: u64, name: Option<String>) -> Result<HttpResponse, ApiError> {
        let etag = format!("\"{cid}\"");
        if let Some(response) = self.not_modified(&etag) {
            return Ok(response);
        }
        let content_type = content_type(self.state.content.as_ref(), &cid, size, name.as_deref()).await?;
        let range_header = self.req.headers().get(header::RANGE).and_then(|v| v.to_str().ok());
        let mut builder = self.builder(StatusCode::OK, &etag);
        builder.insert_header((header::ACCEPT_RANGES, "bytes"));
        if let Some(filename) = &self.query.filename {
            let kind = if self.query.download == Some(true) {
                "attachment"
            } else {
                "inline"
            };
            builder.insert_header((header::CONTENT_DISPOSITION, disposition(kind, filename)));
        } else if self.query.download == Some(true) {
            builder.insert_header((
                header::CONTENT_DISPOSITION,
                disposition("attachment", name.as_deref().unwrap_or(&cid.to_string())),
            ));
        }
        match range::parse(range_header, size) {
            RangeRequest::Whole => {
                let body = self.state.content.read(&cid, ByteRange::full()).await?;
                Ok(builder
                    .content_type(content_type)
                    .body(SizedStream::new(size, self.metered(body))))
            }
            RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
                let (start, end) = ranges[0];
                let body = self
                    .state
                    .content
                    .read(&cid, ByteRange::new(start, Some(end - start)))
                    .await?;
                Ok(builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .content_type(content_type)
                    .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1)))
                    .body(SizedStream::new(end - start, self.metered(body))))
            }
            RangeRequest::Ranges(ranges) => {
                let (boundary, length, body) = self.multipart(&cid, size, &content_type, ranges).await?;
                Ok(builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .content_type(format!("multipart/byteranges; boundary={boundary}"))
                    .body(SizedStream::new(length, self.metered(body))))
            }
            RangeRequest::Unsatisfiable => {
                let error = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!(
                        "no range of {:?} is inside the {size} bytes of {cid}",
                        range_header.unwrap_or_default()
                    ),
                );
                let mut response = actix_web::ResponseError::error_response(&error);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
                );
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                Ok(response)
            }
        }
    }

    /// A `multipart/byteranges` body: its boundary, exact length and stream.
    async fn multipart(
        &self,
        cid: &Cid,
        size: u64,
        content_type: &str,
        ranges: Vec<(u64, u64)>,
    ) -> Result<(String, u64, ByteStream), ApiError> {
        let boundary = format!(
            "ipfs-stream-{}",
            &cid.to_string()[cid.to_string().len().saturating_sub(16)..]
        );
        let mut parts: Vec<ByteStream> = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut length = 0u64;
        for (start, end) in ranges {
            let head = format!(
                "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
                end - 1
            );
            length += head.len() as u64 + (end - start);
            parts.push(stream::once(async move { Ok(Bytes::from(head)) }).boxed());
            parts.push(
                self.state
                    .content
                    .read(cid, ByteRange::new(start, Some(end - start)))
                    .await?,
            );
        }
        let tail = format!("\r\n--{boundary}--\r\n");
        length += tail.len() as u64;
        parts.push(stream::once(async move { Ok(Bytes::from(tail)) }).boxed());
        Ok((boundary, length, stream::iter(parts).flatten().boxed()))
    }

    /// From the file name when it says, else from the first bytes.
    async fn directory(&self) -> Result<HttpResponse, ApiError> {
        let entries = self.state.content.list_directory(&self.target).await?;
        if let Some(index) = entries.iter().find(|e| e.name == "index.html") {
            if !self.req.path().ends_with('/') {
                let mut location = format!("{}/", self.req.path());
                if !self.req.query_string().is_empty() {
                    location = format!("{location}?{}", self.req.query_string());
                }
                return Ok(HttpResponse::MovedPermanently()
                    .insert_header((header::LOCATION, location))
                    .finish());
            }
            let stat = self.state.content.stat(&index.cid).await?;
            return self.file(index.cid, stat.size, Some("index.html".into())).await;
        }
        let etag = format!("\"DirIndex-{}-{}\"", env!("CARGO_PKG_VERSION"), self.target);
        if let Some(response) = self.not_modified(&etag) {
            return Ok(response);
        }
        let accept = self
            .req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut builder = self.builder(StatusCode::OK, &etag);
        if accept.contains("application/json") && !accept.contains("text/html") {
            let listing = Listing {
                cid: self.target.to_string(),
                path: self.content_path.clone(),
                entries: entries.iter().map(ListingEntry::from).collect(),
            };
            return Ok(builder.json(listing));
        }
        Ok(builder.content_type("text/html; charset=utf-8").body(listing_html(
            &self.content_path,
            &self.target,
            &entries,
        )))
    }
}

/// A directory listing as JSON.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Listing {
    pub cid: String,
    pub path: String,
    pub entries: Vec<ListingEntry>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ListingEntry {
    pub name: String,
    pub cid: String,
    /// Bytes of the entry's DAG, as its link records it.
    pub size: u64,
}

impl From<&DirEntry> for ListingEntry {
    fn from(e: &DirEntry) -> Self {
        Self {
            name: e.name.clone(),
            cid: e.cid.to_string(),
            size: e.tsize,
        }
    }
}

fn listing_html(path: &str, cid: &Cid, entries: &[DirEntry]) -> String {
    let base = path.trim_end_matches('/');
    let rows: String = entries
        .iter()
        .map(|e| {
            let href = format!(
                "{base}/{}",
                percent_encoding::utf8_percent_encode(&e.name, PATH_SEGMENT)
            );
            format!(
                "<tr><td><a href=\"{}\">{}</a></td><td><code>{}</code></td><td>{}</td></tr>\n",
                escape_html(&href),
                escape_html(&e.name),
                e.cid,
                e.tsize
            )
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.2em 1em}}</style></head>\n\
         <body><h1>Index of {title}</h1><p><code>{cid}</code></p>\n\
         <table><tr><th>Name</th><th>CID</th><th>Size</th></tr>\n{rows}</table></body></html>\n",
        title = escape_html(path),
    )
}

/// Characters escaped in a path segment of a link.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `inline|attachment; filename="..."`, plus RFC 5987 `filename*` for names beyond ASCII.
fn disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        format!("{kind}; filename=\"{name}\"")
    } else {
        let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

/// The type of a file: from its name when that says, else from its first bytes.
pub async fn content_type(
    content: &dyn model::content::ContentService,
    cid: &Cid,
    size: u64,
    name: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(mime) = name.and_then(|n| mime_guess::from_path(n).first()) {
        return Ok(with_charset(mime.essence_str()));
    }
    let head: Vec<Bytes> = content
        .read(cid, ByteRange::new(0, Some(SNIFF_LEN.min(size))))
        .await?
        .try_collect()
        .await?;
    Ok(sniff(&head.concat()))
}

fn with_charset(mime: &str) -> String {
    if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

/// The type of content from its first bytes: known magic numbers, else text if it reads as UTF-8.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a multi-byte character at the end of the sample.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if head.is_empty() || (text && !head.contains(&0)) {
        "text/plain; charset=utf-8".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_names_media_text_and_binary() {
        let mut mp4 = vec![0, 0, 0, 0x18];
        mp4.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2avc1mp41");
        assert_eq!(sniff(&mp4), "video/mp4");
        // An EBML header whose DocType is "webm", padded as a real file's first 512 bytes would be.
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        webm.resize(512, 0);
        assert_eq!(sniff(&webm), "video/webm");
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff("héllo wörld".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(
            sniff(&"é".as_bytes()[..1]),
            "text/plain; charset=utf-8",
            "a character cut by the sample"
        );
        assert_eq!(sniff(&[0, 159, 146, 150, 1, 2]), "application/octet-stream");
    }

    #[test]
    fn dispositions_quote_ascii_and_encode_the_rest() {
        assert_eq!(disposition("inline", "a b.txt"), "inline; filename=\"a b.txt\"");
        assert_eq!(
            disposition("attachment", "España.txt"),
            "attachment; filename=\"Espa_a.txt\"; filename*=UTF-8''Espa%C3%B1a%2Etxt"
        );
    }
}
