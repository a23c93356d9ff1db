//! The OpenAPI 3.1 document of every route, generated from the handlers' annotations, and the
//! routes that serve it: `/openapi.json` and a Swagger UI at `/docs` (vendored: nothing is fetched
//! from the network, at build time or in the browser).

use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError, web};
use utoipa::OpenApi;

/// Bytes of any kind, in a request or a reply.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// A multipart/form-data upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes (the `name` query parameter names the content).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// An error of the Kubo RPC subset, in Kubo's shape.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"Message": "block was not found locally", "Code": 0, "Type": "error"}))]
#[allow(dead_code, non_snake_case)]
pub struct KuboErrorBody {
    Message: String,
    Code: u32,
    Type: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ipfs-stream",
        description = "Stores content the IPFS way (CIDs identical to Kubo's `ipfs add`) and streams it: an IPFS gateway with byte ranges, a REST API for content, and the part of Kubo's RPC API that IPFS clients use.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "gateway", description = "The IPFS path and trustless gateway"),
        (name = "content", description = "Content: add, list, stat, remove, import CARs"),
        (name = "kubo-rpc", description = "Kubo RPC subset: POST only, errors as 500 + {Message, Code, Type}"),
        (name = "streaming", description = "Server-Sent Events (WebSocket routes are described in the README)"),
        (name = "notifications", description = "Notification history (live events: /ws/notifications, see the README)"),
        (name = "metrics", description = "Streaming metrics recorded for every stream"),
        (name = "monitoring", description = "Sampled server series, active content, anomalies and trends, fault injection (dashboard: /dashboard)"),
        (name = "webrtc", description = "WebRTC playback: streams, connections, quality (signaling: /ws/webrtc, player: /player, see the README)"),
        (name = "whep", description = "WHEP (RFC 9725): SDP offer in, SDP answer out, trickle ICE by PATCH"),
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Tickets for browsers (WebSocket, EventSource) and who a credential is; tokens are made with `ipfs-stream token create`"),
    ),
)]
struct ApiDoc;

/// The OpenAPI document, as `/openapi.json` serves it: the paths are those of the route table.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    crate::routes::document_paths(&mut doc);
    let bearer = utoipa::openapi::security::HttpBuilder::new()
        .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
        .bearer_format("ist_<id>_<secret> (ipfs-stream token create) or a JWT")
        .description(Some(
            "A token of this server or a JWT of the configured identity provider. Each operation's \
             security names the scope it needs; operations with `security: []` are public.",
        ))
        .build();
    doc.components
        .get_or_insert_with(utoipa::openapi::Components::new)
        .add_security_scheme(
            crate::routes::BEARER_SCHEME,
            utoipa::openapi::security::SecurityScheme::Http(bearer),
        );
    doc
}

/// The document as JSON, made once.
static DOCUMENT_JSON: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&document()).expect("the document serializes"));

/// The Swagger UI's settings: it reads the document we serve.
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json"])));

/// `GET /openapi.json`.
pub async fn serve_document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT_JSON.as_str())
}

/// `GET /docs`: the UI's files are relative to `/docs/`.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::TemporaryRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: the Swagger UI's files, vendored in the binary.
pub async fn docs_file(file: web::Path<String>) -> HttpResponse {
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => {
            let mut response = HttpResponse::Ok();
            if file.gzpipped {
                response.insert_header((header::CONTENT_ENCODING, "gzip"));
            }
            response.content_type(file.content_type).body(file.bytes.into_owned())
        }
        Ok(None) => crate::ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no docs file {:?}", file.as_str()),
        )
        .error_response(),
        Err(error) => crate::ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            error.to_string(),
        )
        .error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_in_openapi_3_1() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/ipfs/{cid}/{path}",
            "/api/v1/content",
            "/api/v1/content/{cid}",
            "/api/v1/car",
            "/api/v0/add",
            "/health",
            "/api/v1/metrics/history",
            "/api/v1/content/active",
            "/api/v1/analytics",
            "/api/v1/faults",
            "/api/v1/webrtc/streams",
            "/api/v1/webrtc/connections/{pc_id}/stats",
            "/whep/{cid}",
            "/whep/sessions/{pc_id}",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
        let mut documented: Vec<&str> = crate::routes::table()
            .iter()
            .filter(|route| route.documented())
            .map(|route| route.label)
            .collect();
        documented.sort_unstable();
        documented.dedup();
        assert_eq!(paths.len(), documented.len());
    }
}
