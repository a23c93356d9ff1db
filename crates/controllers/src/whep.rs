//! WHEP (WebRTC-HTTP Egress Protocol, RFC 9725): `POST /whep/{cid}` or `/whep/streams/{stream_id}`
//! with an SDP offer gives `201` with the SDP answer, the session's `Location`, an `ETag` and the
//! ICE servers as `Link` headers; `PATCH` on the session adds trickled candidates
//! (`application/trickle-ice-sdpfrag`); `DELETE` ends it; `OPTIONS` answers CORS preflights.
//! Quality and buffer settings come as query parameters.

use std::str::FromStr;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use cid::Cid;
use model::media::playback::BufferSettings;
use model::webrtc::{IceCandidate, IceServer, PlayRequest, Quality, Target};
use serde::Deserialize;
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;
use crate::webrtc_api::{service, valid_quality};

/// Largest SDP offer accepted.
const MAX_SDP: usize = 64 * 1024;

/// Playback settings of a WHEP request.
#[derive(Debug, Default, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WhepQuery {
    /// `low`, `medium`, `high` or `auto`.
    #[validate(custom(function = "valid_quality"))]
    pub quality: Option<String>,
    /// Frames the buffer holds (1-120).
    #[validate(range(min = 1, max = 120, message = "must be between 1 and 120"))]
    #[param(minimum = 1, maximum = 120)]
    pub buffer_size: Option<u32>,
    /// Fill level at which the buffer is refilled (0.1-0.9).
    #[validate(range(min = 0.1, max = 0.9, message = "must be between 0.1 and 0.9"))]
    #[param(minimum = 0.1, maximum = 0.9)]
    pub prefetch_threshold: Option<f64>,
    /// Read the media by ranges as it plays.
    pub use_progressive_loading: Option<bool>,
    /// Let the buffer's target and threshold follow underflows and jitter (default true); false
    /// keeps them as set.
    pub adaptive_buffer: Option<bool>,
}

impl WhepQuery {
    pub(crate) fn request(&self, target: Target) -> PlayRequest {
        let buffer = (self.buffer_size.is_some()
            || self.prefetch_threshold.is_some()
            || self.adaptive_buffer.is_some())
        .then(|| BufferSettings {
            buffer_size: self.buffer_size.unwrap_or(30) as usize,
            prefetch_threshold: self.prefetch_threshold.unwrap_or(0.5),
            adaptive: self.adaptive_buffer.unwrap_or(true),
        });
        PlayRequest {
            target,
            quality: self.quality.as_deref().and_then(Quality::parse),
            buffer,
            progressive: self.use_progressive_loading,
        }
    }
}

fn cors(response: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    response
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header(("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", "Content-Type, If-Match, Authorization"))
        .insert_header(("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch"))
}

/// CORS preflight (of a CID's endpoint: only for a CID).
#[utoipa::path(options, path = "/whep/{cid}", tag = "whep", params(("cid" = String, Path, description = "CID of the media")),
    responses((status = 204, description = "CORS headers"), (status = 400, description = "Not a CID", body = crate::error::ErrorBody)))]
pub async fn preflight(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(cid) = req.match_info().get("cid") {
        model::content::parse_cid(cid)?;
    }
    Ok(cors(&mut HttpResponse::NoContent())
        .insert_header(("Accept-Post", "application/sdp"))
        .finish())
}

fn require_content_type(req: &HttpRequest, expected: &str) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(expected)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!("Content-Type must be {expected}, not {given:?}"),
        ))
    }
}

fn sdp_text(body: &web::Bytes) -> Result<&str, ApiError> {
    if body.len() > MAX_SDP {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the SDP offer exceeds {MAX_SDP} bytes"),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_parameter("sdp", "sdp: the offer is not UTF-8"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError::bad_parameter("sdp", "sdp: an SDP offer starts with \"v=0\""));
    }
    Ok(text)
}

/// `Link` header values for the ICE servers (RFC 9725 §4.6).
fn ice_links(servers: &[IceServer]) -> Vec<String> {
    servers
        .iter()
        .flat_map(|server| {
            server.urls.iter().map(move |url| {
                let mut link = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                    link.push_str(&format!(
                        "; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
                    ));
                }
                link
            })
        })
        .collect()
}

async fn play(
    req: HttpRequest,
    state: &AppState,
    request: PlayRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/sdp")?;
    let offer = sdp_text(&body)?;
    let answer = service(state)?.accept(request, offer).await?;
    let mut response = HttpResponse::Created();
    cors(&mut response)
        .content_type("application/sdp")
        .insert_header((header::LOCATION, format!("/whep/sessions/{}", answer.pc_id)))
        .insert_header((header::ETAG, format!("\"{}\"", answer.pc_id)))
        .insert_header(("Accept-Patch", "application/trickle-ice-sdpfrag"));
    for link in ice_links(&answer.ice_servers) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.append_header((header::LINK, value));
        }
    }
    Ok(response.body(answer.sdp))
}

/// Play a stored file over WebRTC: the body is the SDP offer, the reply the answer.
#[utoipa::path(post, path = "/whep/{cid}", tag = "whep", params(WhepQuery), request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, description = "SDP answer; Location, ETag and Link headers"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn play_cid(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Checked<WhepQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let cid = Cid::from_str(&path).map_err(|e| {
        ApiError::from(model::Error::InvalidCid {
            input: path.to_string(),
            reason: e.to_string(),
        })
    })?;
    play(req, &state, query.request(Target::Cid(cid)), body).await
}

/// Join a created stream over WebRTC.
#[utoipa::path(post, path = "/whep/streams/{stream_id}", tag = "whep", params(WhepQuery), request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, description = "SDP answer"), (status = 400, description = "A malformed offer or parameter", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 415, description = "Not application/sdp", body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody)))]
pub async fn play_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Checked<WhepQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    play(req, &state, query.request(Target::Stream(path.into_inner())), body).await
}

/// The candidates of a trickle-ice-sdpfrag (RFC 8840), each with the media section it follows and
/// the fragment's ICE username fragment. A fragment without candidates gives one empty candidate
/// (end of candidates) with that username fragment, so that an ICE restart is seen even then.
pub fn parse_sdpfrag(frag: &str) -> Result<Vec<IceCandidate>, ApiError> {
    let ufrag = model::webrtc::ice_ufrag(frag).map(str::to_owned);
    let mut mid: Option<String> = None;
    let mut index: Option<u16> = None;
    let mut candidates = Vec::new();
    for line in frag.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            index = Some(index.map_or(0, |i| i + 1));
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            if candidate.starts_with("candidate:") {
                if candidate.split_whitespace().count() < 8 {
                    return Err(ApiError::bad_parameter(
                        "candidate",
                        format!("candidate: malformed line {line:?}"),
                    ));
                }
                candidates.push(IceCandidate {
                    candidate: candidate.to_owned(),
                    sdp_mid: mid.clone(),
                    sdp_mline_index: index,
                    username_fragment: ufrag.clone(),
                });
            }
        } else if !line.contains('=') {
            return Err(ApiError::bad_parameter(
                "sdpfrag",
                format!("sdpfrag: not an SDP line {line:?}"),
            ));
        }
    }
    if candidates.is_empty() && ufrag.is_some() {
        candidates.push(IceCandidate {
            username_fragment: ufrag,
            ..Default::default()
        });
    }
    Ok(candidates)
}

/// Trickle ICE candidates into a session.
#[utoipa::path(patch, path = "/whep/sessions/{pc_id}", tag = "whep", request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 415, description = "Not application/trickle-ice-sdpfrag", body = crate::error::ErrorBody),
              (status = 412, description = "If-Match does not match the session", body = crate::error::ErrorBody),
              (status = 422, description = "An ICE restart (a username fragment other than the session's): not supported", body = crate::error::ErrorBody)))]
pub async fn trickle(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/trickle-ice-sdpfrag")?;
    let webrtc = service(&state)?;
    let pc_id = path.into_inner();
    if let Some(if_match) = req.headers().get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && if_match != "*"
        && if_match.trim() != format!("\"{pc_id}\"")
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "etag_mismatch",
            format!("If-Match {if_match} does not name this session"),
        ));
    }
    let frag = std::str::from_utf8(&body).map_err(|_| ApiError::bad_parameter("sdpfrag", "sdpfrag: not UTF-8"))?;
    let candidates = parse_sdpfrag(frag)?;
    // An unknown session is a 404 even with no candidates in the fragment.
    if !webrtc.connections().iter().any(|c| c.pc_id == pc_id) {
        return Err(ApiError::not_found(format!("no WHEP session {pc_id:?}")));
    }
    for candidate in candidates {
        webrtc.add_candidate(&pc_id, candidate).await?;
    }
    Ok(cors(&mut HttpResponse::NoContent()).finish())
}

/// End a session.
#[utoipa::path(delete, path = "/whep/sessions/{pc_id}", tag = "whep", responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
pub async fn end(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    service(&state)?.close(&path).await?;
    Ok(cors(&mut HttpResponse::Ok()).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdpfrag_candidates_keep_their_media_section() {
        let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:efgh\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                    a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n";
        let candidates = parse_sdpfrag(frag).unwrap();
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(candidates[0].sdp_mline_index, Some(0));
        assert!(candidates[0].candidate.starts_with("candidate:1 1 udp"));
        assert_eq!(candidates[0].username_fragment.as_deref(), Some("abcd"));
        // Credentials alone (an ICE restart without candidates yet) still reach the session.
        let credentials = parse_sdpfrag("a=ice-ufrag:wxyz\r\na=ice-pwd:efgh\r\n").unwrap();
        assert_eq!(credentials.len(), 1);
        assert!(credentials[0].candidate.is_empty());
        assert_eq!(credentials[0].username_fragment.as_deref(), Some("wxyz"));
        assert!(parse_sdpfrag("a=end-of-candidates\r\n").unwrap().is_empty());
        assert!(parse_sdpfrag("a=candidate:1 1 udp").is_err());
        assert!(parse_sdpfrag("garbage").is_err());
    }

    #[test]
    fn ice_servers_become_link_headers() {
        let links = ice_links(&[IceServer {
            urls: vec!["turn:turn.example.org:3478".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }]);
        assert_eq!(
            links,
            vec![
                "<turn:turn.example.org:3478>; rel=\"ice-server\"; username=\"u\"; credential=\"p\"; credential-type=\"password\""
            ]
        );
    }
}
