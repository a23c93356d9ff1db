//! The monitoring dashboard at `/dashboard`: a page and its scripts compiled into the binary
//! (uPlot vendored under `assets/dashboard/vendor`, MIT), so it works with no network at all.

use actix_web::{HttpResponse, web};

use crate::embedded::{self, Asset};
use crate::error::ApiError;

/// (name, content type, bytes) of every asset the page loads.
const ASSETS: [Asset; 5] = [
    (
        "auth.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/common/auth.js"),
    ),
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

pub(crate) async fn page() -> HttpResponse {
    embedded::page(PAGE)
}

pub(crate) async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    embedded::asset(&ASSETS, "dashboard", &name)
}
