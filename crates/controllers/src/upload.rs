//! Request bodies as the model's byte streams. actix's payloads live on one worker thread; a local
//! task pumps them into a small bounded channel, so the model reads a `Send` stream and a slow store
//! slows the client down (back-pressure) instead of buffering.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, http::header, web};
use bytes::Bytes;
use futures::StreamExt;
use model::content::ByteStream;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Pieces of a body in flight between the connection and the import.
const IN_FLIGHT: usize = 8;

/// The body of `req`: the first file part of a `multipart/form-data` body, else the raw body.
pub fn body_stream(req: &HttpRequest, payload: web::Payload, limit: u64) -> Result<ByteStream, ApiError> {
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit
    {
        return Err(ApiError::from(model::Error::TooLarge { limit }));
    }
    let (sender, stream) = channel();
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if is_multipart {
        let multipart = Multipart::new(req.headers(), payload);
        actix_web::rt::spawn(pump_first_file(multipart, sender, limit));
    } else {
        actix_web::rt::spawn(pump(payload.map(|r| r.map_err(|e| e.to_string())), sender, limit));
    }
    Ok(stream)
}

/// A bounded channel whose receiving end is a model byte stream.
pub fn channel() -> (mpsc::Sender<model::Result<Bytes>>, ByteStream) {
    let (sender, receiver) = mpsc::channel::<model::Result<Bytes>>(IN_FLIGHT);
    let stream = futures::stream::unfold(receiver, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (sender, stream.boxed())
}

/// Forwards one multipart field into `sender`; see [`pump`].
pub async fn pump_field(field: actix_multipart::Field, sender: mpsc::Sender<model::Result<Bytes>>, limit: u64) {
    pump(field.map(|r| r.map_err(|e| e.to_string())), sender, limit).await
}

/// Forwards `source` until it ends, fails, passes `limit` bytes, or the receiver goes away.
async fn pump<S>(mut source: S, sender: mpsc::Sender<model::Result<Bytes>>, limit: u64)
where
    S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut received = 0u64;
    while let Some(piece) = source.next().await {
        let piece = piece
            .map_err(|e| model::Error::Input(format!("request body: {e}")))
            .and_then(|bytes| {
                received += bytes.len() as u64;
                if received > limit {
                    Err(model::Error::TooLarge { limit })
                } else {
                    Ok(bytes)
                }
            });
        let failed = piece.is_err();
        if sender.send(piece).await.is_err() || failed {
            return; // the import stopped, or the client went away
        }
    }
}

async fn pump_first_file(mut multipart: Multipart, sender: mpsc::Sender<model::Result<Bytes>>, limit: u64) {
    while let Some(field) = multipart.next().await {
        match field {
            Ok(field) => {
                let is_file = field.content_disposition().is_some_and(|d| d.get_filename().is_some())
                    || field.name() == Some("file");
                if is_file {
                    pump_field(field, sender, limit).await;
                    return;
                }
            }
            Err(e) => {
                let _ = sender
                    .send(Err(model::Error::Input(format!("multipart body: {e}"))))
                    .await;
                return;
            }
        }
    }
    let _ = sender
        .send(Err(model::Error::Input("multipart body has no file part".into())))
        .await;
}
