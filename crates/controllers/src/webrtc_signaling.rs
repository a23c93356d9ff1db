//! WebRTC signaling over `GET /ws/webrtc` (the seeds' protocol, with trickle ICE).
//!
//! The server says `welcome {client_id, server_info, capabilities}` first. Client messages carry a
//! `type`: `offer_request {cid | stream_id, quality?, buffer_size?, prefetch_threshold?,
//! use_progressive_loading?}` → `offer {pc_id, stream_id, sdp, ice_servers, tracks}`;
//! `answer {pc_id, sdp}` → `answer_result`; `candidate {pc_id, candidate, sdpMid, sdpMLineIndex}`
//! (the server sends its own the same way, and `connection_state {pc_id, state}`);
//! `add_ipfs_track {pc_id, cid}` → `add_track_result {pc_id, sdp, tracks}` (a new offer to answer);
//! `quality_change {pc_id, quality}` → `quality_result`; `stats_request {pc_id?}` → `stats`;
//! `close {pc_id}` → `close_result`. Anything wrong gets `error {error, message, request_type}`.
//! A socket only acts on the connections it opened; closing it closes them.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{Message, Session};
use cid::Cid;
use futures::StreamExt;
use model::webrtc::{IceCandidate, PeerEvent, Quality, Target, WebRtcService};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use validator::Validate;

use crate::AppState;
use crate::webrtc_api::{service, valid_cid, valid_quality};
use crate::whep::WhepQuery;
use crate::ws::error_message;

/// Client messages larger than this close the connection (SDP offers are a few kB).
const MAX_MESSAGE: usize = 256 * 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /ws/webrtc`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let webrtc = service(&state)?;
    let (response, session, messages) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(serve(webrtc, session, messages.max_frame_size(MAX_MESSAGE)));
    Ok(response)
}

fn error(request_type: &str, code: &str, message: impl Into<String>) -> Value {
    let mut reply = error_message(code, message);
    reply["request_type"] = Value::String(request_type.to_owned());
    reply
}

async fn serve(webrtc: Arc<dyn WebRtcService>, mut session: Session, mut messages: actix_ws::MessageStream) {
    let client_id = uuid::Uuid::new_v4().to_string();
    let (events_out, mut events) = mpsc::channel::<Value>(256);
    let mut owned: HashSet<String> = HashSet::new();
    let welcome = json!({
        "type": "welcome",
        "client_id": client_id,
        "server_info": {"name": "ipfs-stream", "version": env!("CARGO_PKG_VERSION"),
                        "features": ["trickle_ice", "renegotiation", "adaptive_quality", "whep"]},
        "capabilities": {
            "codecs": ["H264", "VP8", "VP9", "AV1", "opus"],
            "qualities": Quality::ALL.iter().map(|q| q.as_str()).collect::<Vec<_>>(),
            "buffer_size": {"min": 1, "max": 120, "default": 30},
            "prefetch_threshold": {"min": 0.1, "max": 0.9, "default": 0.5},
            "ice_servers": webrtc.ice_servers(),
        },
    });
    let mut open = session.text(welcome.to_string()).await.is_ok();
    while open {
        let reply = tokio::select! {
            event = events.recv() => event,
            message = messages.next() => match message {
                Some(Ok(Message::Text(text))) => Some(handle(&webrtc, &mut owned, &events_out, &text).await),
                Some(Ok(Message::Binary(_))) => Some(error("binary", "unsupported", "binary messages are not part of this protocol")),
                Some(Ok(Message::Ping(bytes))) => {
                    let _ = session.pong(&bytes).await;
                    None
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => None,
            },
        };
        if let Some(reply) = reply {
            open = matches!(
                tokio::time::timeout(SEND_TIMEOUT, session.text(reply.to_string())).await,
                Ok(Ok(()))
            );
        }
    }
    for pc_id in owned {
        let _ = webrtc.close(&pc_id).await;
    }
    let _ = session.close(None).await;
}

#[derive(Deserialize, Validate)]
struct OfferRequest {
    #[validate(custom(function = "valid_cid"))]
    cid: Option<String>,
    stream_id: Option<String>,
    #[validate(custom(function = "valid_quality"))]
    quality: Option<String>,
    #[validate(range(min = 1, max = 120, message = "must be between 1 and 120"))]
    buffer_size: Option<u32>,
    #[validate(range(min = 0.1, max = 0.9, message = "must be between 0.1 and 0.9"))]
    prefetch_threshold: Option<f64>,
    use_progressive_loading: Option<bool>,
    adaptive_buffer: Option<bool>,
}

#[derive(Deserialize)]
struct CandidateMessage {
    pc_id: String,
    candidate: String,
    #[serde(rename = "sdpMid")]
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_mline_index: Option<u16>,
    #[serde(rename = "usernameFragment")]
    username_fragment: Option<String>,
}

/// Forwards a connection's candidates and state changes to the socket.
fn relay(pc_id: String, mut peer_events: mpsc::Receiver<PeerEvent>, out: mpsc::Sender<Value>) {
    tokio::spawn(async move {
        while let Some(event) = peer_events.recv().await {
            let message = match event {
                PeerEvent::Candidate(candidate) => json!({
                    "type": "candidate", "pc_id": pc_id, "candidate": candidate.candidate,
                    "sdpMid": candidate.sdp_mid, "sdpMLineIndex": candidate.sdp_mline_index,
                }),
                PeerEvent::State(state) => json!({"type": "connection_state", "pc_id": pc_id, "state": state}),
            };
            if out.send(message).await.is_err() {
                break;
            }
        }
    });
}

/// A field of `message` that must be there, as a string.
fn required<'a>(message: &'a Value, kind: &str, field: &str) -> Result<&'a str, Value> {
    message
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| error(kind, "missing_field", format!("{kind} needs \"{field}\" (a string)")))
}

fn parse<T: serde::de::DeserializeOwned>(message: &Value, kind: &str) -> Result<T, Value> {
    serde_json::from_value(message.clone()).map_err(|e| error(kind, "invalid_message", format!("{kind}: {e}")))
}

/// The connection named by `pc_id`, if this socket opened it.
fn owned_pc<'a>(owned: &HashSet<String>, message: &'a Value, kind: &str) -> Result<&'a str, Value> {
    let pc_id = required(message, kind, "pc_id")?;
    if owned.contains(pc_id) {
        Ok(pc_id)
    } else {
        Err(error(
            kind,
            "unknown_pc_id",
            format!("no connection {pc_id:?} on this socket"),
        ))
    }
}

/// The answer to one text message of the socket, the connections it opened kept in `owned` and
/// their events sent to `out`.
pub async fn handle(
    webrtc: &Arc<dyn WebRtcService>,
    owned: &mut HashSet<String>,
    out: &mpsc::Sender<Value>,
    text: &str,
) -> Value {
    let message: Value = match serde_json::from_str(text) {
        Ok(message @ Value::Object(_)) => message,
        Ok(_) => {
            return error(
                "unknown",
                "invalid_message",
                "a message is a JSON object with a \"type\"",
            );
        }
        Err(e) => return error("unknown", "invalid_json", format!("Invalid JSON message: {e}")),
    };
    let Some(kind) = message.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return error("unknown", "missing_field", "every message needs a \"type\"");
    };
    match dispatch(webrtc, owned, out, &kind, &message).await {
        Ok(reply) | Err(reply) => reply,
    }
}

async fn dispatch(
    webrtc: &Arc<dyn WebRtcService>,
    owned: &mut HashSet<String>,
    out: &mpsc::Sender<Value>,
    kind: &str,
    message: &Value,
) -> Result<Value, Value> {
    let failed = |e: model::Error| {
        let api = crate::ApiError::from(e);
        error(kind, api.code, api.message)
    };
    match kind {
        "offer_request" => {
            let request: OfferRequest = parse(message, kind)?;
            request.validate().map_err(|e| {
                let api = crate::ApiError::from(e);
                error(kind, api.code, api.message)
            })?;
            let target = match (&request.cid, &request.stream_id) {
                (Some(cid), _) => Target::Cid(Cid::from_str(cid).expect("validated")),
                (None, Some(stream_id)) => Target::Stream(stream_id.clone()),
                (None, None) => {
                    return Err(error(
                        kind,
                        "missing_field",
                        "offer_request needs \"cid\" or \"stream_id\"",
                    ));
                }
            };
            let settings = WhepQuery {
                quality: request.quality,
                buffer_size: request.buffer_size,
                prefetch_threshold: request.prefetch_threshold,
                use_progressive_loading: request.use_progressive_loading,
                adaptive_buffer: request.adaptive_buffer,
            };
            let offer = webrtc.offer(settings.request(target)).await.map_err(failed)?;
            owned.insert(offer.pc_id.clone());
            relay(offer.pc_id.clone(), offer.events, out.clone());
            Ok(json!({
                "type": "offer", "pc_id": offer.pc_id, "stream_id": offer.stream_id, "sdp": offer.sdp,
                "sdp_type": "offer", "ice_servers": offer.ice_servers, "tracks": offer.tracks,
            }))
        }
        "answer" => {
            let pc_id = owned_pc(owned, message, kind)?;
            let sdp = required(message, kind, "sdp")?;
            webrtc.answer(pc_id, sdp).await.map_err(failed)?;
            Ok(json!({"type": "answer_result", "pc_id": pc_id, "success": true}))
        }
        "candidate" => {
            owned_pc(owned, message, kind)?;
            let candidate: CandidateMessage = parse(message, kind)?;
            webrtc
                .add_candidate(
                    &candidate.pc_id,
                    IceCandidate {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        username_fragment: candidate.username_fragment,
                    },
                )
                .await
                .map_err(failed)?;
            Ok(json!({"type": "candidate_result", "pc_id": candidate.pc_id, "success": true}))
        }
        "add_ipfs_track" => {
            let pc_id = owned_pc(owned, message, kind)?;
            let cid = required(message, kind, "cid")?;
            let cid =
                Cid::from_str(cid).map_err(|e| error(kind, "invalid_cid", format!("invalid CID {cid:?}: {e}")))?;
            let (sdp, tracks) = webrtc.add_track(pc_id, cid).await.map_err(failed)?;
            Ok(
                json!({"type": "add_track_result", "pc_id": pc_id, "cid": cid.to_string(), "sdp": sdp,
                      "sdp_type": "offer", "tracks": tracks, "success": true}),
            )
        }
        "quality_change" => {
            let pc_id = owned_pc(owned, message, kind)?;
            let name = required(message, kind, "quality")?;
            let quality = Quality::parse(name).ok_or_else(|| {
                error(
                    kind,
                    "invalid_parameter",
                    format!("quality: {name:?} is not one of low, medium, high, auto"),
                )
            })?;
            let change = webrtc.set_quality(pc_id, quality).await.map_err(failed)?;
            Ok(
                json!({"type": "quality_result", "pc_id": change.pc_id, "quality": change.quality,
                      "rendition": change.rendition, "adaptable": change.adaptable, "success": true}),
            )
        }
        "stats_request" => match message.get("pc_id").and_then(Value::as_str) {
            Some(_) => {
                let pc_id = owned_pc(owned, message, kind)?;
                let stats = webrtc.stats(pc_id).await.map_err(failed)?;
                Ok(json!({"type": "stats", "pc_id": pc_id, "stats": stats}))
            }
            None => {
                let mut all = Vec::new();
                for pc_id in owned.iter() {
                    if let Ok(stats) = webrtc.stats(pc_id).await {
                        all.push(stats);
                    }
                }
                Ok(json!({"type": "stats", "connections": all}))
            }
        },
        "close" => {
            let pc_id = owned_pc(owned, message, kind)?.to_owned();
            owned.remove(&pc_id);
            webrtc.close(&pc_id).await.map_err(failed)?;
            Ok(json!({"type": "close_result", "pc_id": pc_id, "success": true}))
        }
        other => Err(error(other, "unknown_type", format!("Unknown message type: {other}"))),
    }
}
