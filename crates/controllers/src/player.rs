//! The player page at `/player?cid=…` (or `?stream_id=…`): plays over WHEP or the WebSocket
//! signaling and shows live decoding and buffer counters. Compiled into the binary; it loads
//! nothing from elsewhere.

use actix_web::{HttpResponse, web};

use crate::embedded::{self, Asset};
use crate::error::ApiError;

/// (name, content type, bytes) of every asset the page loads.
const ASSETS: [Asset; 3] = [
    (
        "auth.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/common/auth.js"),
    ),
    (
        "player.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/player/player.js"),
    ),
    (
        "player.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/player/player.css"),
    ),
];

const PAGE: &str = include_str!("../assets/player/index.html");

pub(crate) async fn page() -> HttpResponse {
    embedded::page(PAGE)
}

pub(crate) async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    embedded::asset(&ASSETS, "player", &name)
}
