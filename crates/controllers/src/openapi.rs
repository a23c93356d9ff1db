//! The OpenAPI 3.1 document of every route, generated from the handlers' annotations, and the
//! routes that serve it: `/openapi.json` and a Swagger UI at `/docs` (vendored: nothing is fetched
//! from the network, at build time or in the browser).

use actix_web::web;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    content_api, gateway, health, kubo_rpc, metrics_api, monitoring_api, notifications_ws, sse, telemetry, webrtc_api,
    whep,
};

/// Bytes of any kind, in a request or a reply.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// A multipart/form-data upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes (its part's filename names it).
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
    paths(
        health::health,
        health::ready,
        gateway::get,
        content_api::add,
        content_api::list,
        content_api::stat,
        content_api::remove,
        content_api::import_car,
        kubo_rpc::add,
        kubo_rpc::cat,
        kubo_rpc::block_get,
        kubo_rpc::block_stat,
        kubo_rpc::dag_export,
        kubo_rpc::dag_import,
        kubo_rpc::pin_add,
        kubo_rpc::pin_rm,
        kubo_rpc::pin_ls,
        kubo_rpc::version,
        metrics_api::summary,
        metrics_api::history,
        monitoring_api::history,
        monitoring_api::series,
        monitoring_api::active_content,
        monitoring_api::analytics,
        monitoring_api::faults,
        monitoring_api::inject_fault,
        monitoring_api::clear_faults,
        sse::stream,
        notifications_ws::history,
        notifications_ws::publish,
        telemetry::scrape,
        webrtc_api::create_stream,
        webrtc_api::list_streams,
        webrtc_api::get_stream,
        webrtc_api::delete_stream,
        webrtc_api::list_connections,
        webrtc_api::connection_stats,
        webrtc_api::close_connection,
        webrtc_api::close_all,
        webrtc_api::set_quality,
        whep::play_cid,
        whep::play_stream,
        whep::trickle,
        whep::end,
        whep::preflight,
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
    ),
)]
struct ApiDoc;

/// The OpenAPI document, as `/openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `/openapi.json` and the docs page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::redirect("/docs", "/docs/"))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document()));
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
        assert_eq!(paths.len(), 37);
    }
}
