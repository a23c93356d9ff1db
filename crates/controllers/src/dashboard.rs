//! The monitoring dashboard at `/dashboard`: a page and its scripts compiled into the binary
//! (uPlot vendored under `assets/dashboard/vendor`, MIT), so it works with no network at all.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// (name, content type, bytes) of every asset the page loads.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/dashboard.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/vendor/uPlot.min.css"),
    ),
];

const PAGE: &str = include_str!("../assets/dashboard/index.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(page))
        .route("/dashboard/", web::get().to(page))
        .route("/dashboard/assets/{name}", web::get().to(asset));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}

async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no dashboard asset named {:?}", name.as_str())))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(*bytes))
}
