//! Pages and their assets compiled into the binary (the dashboard, the player), served uncached so
//! an upgraded server is seen at once.

use actix_web::HttpResponse;
use actix_web::http::header;

use crate::error::ApiError;

/// (name, content type, bytes) of one asset.
pub type Asset = (&'static str, &'static str, &'static [u8]);

/// What a page may load and run: its own scripts only (no inline script), connections to its
/// own server, and no framing by other sites.
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_POLICY))
        .body(html)
}

/// The asset called `name`, or a 404 naming it and what it belongs to.
pub fn asset(assets: &[Asset], owner: &str, name: &str) -> Result<HttpResponse, ApiError> {
    let (_, content_type, bytes) = assets
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .ok_or_else(|| ApiError::not_found(format!("no {owner} asset named {name:?}")))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(*bytes))
}
