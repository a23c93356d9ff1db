//! Request bodies as the model's byte streams. actix's payloads live on one worker thread; a local
//! task pumps them into a channel bounded in bytes, per upload and for all uploads together, so
//! the model reads a `Send` stream and a slow store slows the client down (back-pressure) instead
//! of buffering.

use std::sync::Arc;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, http::header, web};
use bytes::Bytes;
use futures::StreamExt;
use model::content::ByteStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::ApiError;

/// Most pieces in flight per upload, whatever their size: bounds the bookkeeping of tiny pieces.
const MAX_PIECES_IN_FLIGHT: usize = 64;

/// The bytes uploads may hold between the connection and the import.
#[derive(Debug)]
pub struct UploadBuffers {
    per_upload: usize,
    total_bytes: usize,
    total: Arc<Semaphore>,
}

impl UploadBuffers {
    /// `per_upload` bytes for each upload, `total` for all of them (a piece larger than either
    /// waits until it is alone).
    pub fn new(per_upload: usize, total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            per_upload: per_upload.clamp(1, total),
            total_bytes: total,
            total: Arc::new(Semaphore::new(total)),
        }
    }

    /// Bytes held by uploads right now.
    pub fn held(&self) -> usize {
        self.total_bytes - self.total.available_permits()
    }
}

/// The sending end of an upload's channel: a piece waits for room before it is queued.
pub struct PieceSender {
    queue: mpsc::Sender<(model::Result<Bytes>, Option<Room>)>,
    per_upload: Arc<Semaphore>,
    per_upload_bytes: usize,
    total: Arc<Semaphore>,
    total_bytes: usize,
}

/// The room a queued piece takes, given back when the import takes the piece.
struct Room {
    _upload: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// The import went away: nothing more will be read.
#[derive(Debug)]
pub struct ImportGone;

impl PieceSender {
    pub async fn send(&self, piece: model::Result<Bytes>) -> Result<(), ImportGone> {
        let size = piece.as_ref().map_or(0, Bytes::len);
        let room = if size == 0 {
            None
        } else {
            let permits = |cap: usize| u32::try_from(size.min(cap)).unwrap_or(u32::MAX);
            let upload = self
                .per_upload
                .clone()
                .acquire_many_owned(permits(self.per_upload_bytes))
                .await
                .map_err(|_| ImportGone)?;
            let total = self
                .total
                .clone()
                .acquire_many_owned(permits(self.total_bytes))
                .await
                .map_err(|_| ImportGone)?;
            Some(Room {
                _upload: upload,
                _total: total,
            })
        };
        self.queue.send((piece, room)).await.map_err(|_| ImportGone)
    }
}

/// An upload body on its way to the import, and the file name its multipart part gave.
pub struct Upload {
    pub stream: ByteStream,
    pub file_name: Option<String>,
}

/// The body of `req`: the one file part of a `multipart/form-data` body (read up to its headers
/// here, so that its file name is known before the import starts), else the raw body.
pub async fn body_stream(
    req: &HttpRequest,
    payload: web::Payload,
    limit: u64,
    buffers: &UploadBuffers,
    idle_timeout: Duration,
) -> Result<Upload, ApiError> {
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit
    {
        return Err(ApiError::from(model::Error::TooLarge { limit }));
    }
    let (sender, stream) = channel(buffers);
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let source = payload.map(|r| r.map_err(|e| e.to_string()));
        actix_web::rt::spawn(async move { pump(source, &sender, limit, idle_timeout).await });
        return Ok(Upload {
            stream,
            file_name: None,
        });
    }
    let mut multipart = Multipart::new(req.headers(), payload);
    let field = first_file_part(&mut multipart, idle_timeout).await?;
    let file_name = field
        .content_disposition()
        .and_then(|d| d.get_filename())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    actix_web::rt::spawn(pump_file_part(field, multipart, sender, limit, idle_timeout));
    Ok(Upload { stream, file_name })
}

/// A channel bounded by `buffers` whose receiving end is a model byte stream.
pub fn channel(buffers: &UploadBuffers) -> (PieceSender, ByteStream) {
    let (queue, receiver) = mpsc::channel::<(model::Result<Bytes>, Option<Room>)>(MAX_PIECES_IN_FLIGHT);
    let stream = futures::stream::unfold(receiver, |mut rx| async move {
        // The room is given back as the import takes the piece.
        rx.recv().await.map(|(piece, _room)| (piece, rx))
    });
    let sender = PieceSender {
        queue,
        per_upload: Arc::new(Semaphore::new(buffers.per_upload)),
        per_upload_bytes: buffers.per_upload,
        total: buffers.total.clone(),
        total_bytes: buffers.total_bytes,
    };
    (sender, stream.boxed())
}

/// Forwards one multipart field into `sender`; see [`pump`].
pub async fn pump_field(field: actix_multipart::Field, sender: &PieceSender, limit: u64, idle_timeout: Duration) {
    pump(field.map(|r| r.map_err(|e| e.to_string())), sender, limit, idle_timeout).await
}

/// Forwards `source` until it ends, fails, passes `limit` bytes, sends nothing for
/// `idle_timeout`, or the receiver goes away.
async fn pump<S>(mut source: S, sender: &PieceSender, limit: u64, idle_timeout: Duration)
where
    S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut received = 0u64;
    loop {
        let piece = match tokio::time::timeout(idle_timeout, source.next()).await {
            Ok(Some(piece)) => piece.map_err(|e| model::Error::Input(format!("request body: {e}"))),
            Ok(None) => return,
            Err(_) => Err(model::Error::InputStalled(idle_timeout)),
        };
        let piece = piece.and_then(|bytes| {
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

/// Forwards the one file part of a multipart body (a part with a file name, or named `file`) into
/// `sender`; any other part, before or after it, fails the upload by name rather than being
/// dropped unread.
pub async fn pump_first_file(mut multipart: Multipart, sender: PieceSender, limit: u64, idle_timeout: Duration) {
    match first_file_part(&mut multipart, idle_timeout).await {
        Ok(field) => pump_file_part(field, multipart, sender, limit, idle_timeout).await,
        Err(refused) => drop(sender.send(Err(refused)).await),
    }
}

/// The first part of a multipart body, which must be a file (a part with a file name, or named
/// `file`).
async fn first_file_part(multipart: &mut Multipart, idle_timeout: Duration) -> model::Result<actix_multipart::Field> {
    let input = |message: String| model::Error::Input(format!("multipart body: {message}"));
    let field = match next_part(multipart, idle_timeout).await? {
        Some(Ok(field)) => field,
        Some(Err(e)) => return Err(input(e.to_string())),
        None => return Err(input("no file part".into())),
    };
    let is_file =
        field.content_disposition().is_some_and(|d| d.get_filename().is_some()) || field.name() == Some("file");
    if !is_file {
        let name = field.name().unwrap_or_default().to_owned();
        return Err(input(format!("part {name:?} is not a file: send one part, named file")));
    }
    Ok(field)
}

/// Forwards the file part into `sender`, then fails the upload if any part follows it.
async fn pump_file_part(
    field: actix_multipart::Field,
    mut multipart: Multipart,
    sender: PieceSender,
    limit: u64,
    idle_timeout: Duration,
) {
    let refuse = |message: String| sender.send(Err(model::Error::Input(format!("multipart body: {message}"))));
    pump_field(field, &sender, limit, idle_timeout).await;
    match next_part(&mut multipart, idle_timeout).await {
        Ok(None) => {}
        Ok(Some(Ok(extra))) => {
            let name = extra.name().unwrap_or_default().to_owned();
            drop(refuse(format!("a part {name:?} after the file: send one part, named file")).await);
        }
        Ok(Some(Err(e))) => drop(refuse(e.to_string()).await),
        Err(stalled) => drop(sender.send(Err(stalled)).await),
    }
}

/// The next part of a multipart body, or `InputStalled` when the client sends nothing for
/// `idle_timeout` (between parts as within them).
pub async fn next_part(
    multipart: &mut Multipart,
    idle_timeout: Duration,
) -> model::Result<Option<Result<actix_multipart::Field, actix_multipart::MultipartError>>> {
    tokio::time::timeout(idle_timeout, multipart.next())
        .await
        .map_err(|_| model::Error::InputStalled(idle_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize) -> model::Result<Bytes> {
        Ok(Bytes::from(vec![7u8; len]))
    }

    /// Whether `send` completes at once (within a scheduler turn) or waits for room.
    async fn sends_at_once(sender: &PieceSender, len: usize) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), sender.send(piece(len)))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_upload_holds_at_most_its_bytes_until_the_import_takes_them() {
        let buffers = UploadBuffers::new(1000, 1 << 20);
        let (sender, mut stream) = channel(&buffers);
        assert!(sends_at_once(&sender, 600).await);
        assert!(sends_at_once(&sender, 400).await);
        assert_eq!(buffers.held(), 1000);
        assert!(!sends_at_once(&sender, 1).await, "no room left in this upload");
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 600);
        assert!(sends_at_once(&sender, 600).await, "the room the import freed");
        // A piece larger than the whole budget waits until it is alone, then goes.
        let big = tokio::spawn(async move {
            sender.send(piece(5000)).await.unwrap();
            sender
        });
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 400);
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 600);
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 5000);
        drop(big.await.unwrap());
        assert!(stream.next().await.is_none());
        assert_eq!(buffers.held(), 0);
    }

    #[tokio::test]
    async fn all_uploads_together_hold_at_most_the_total() {
        let buffers = UploadBuffers::new(1000, 1500);
        let (first, mut first_stream) = channel(&buffers);
        let (second, _second_stream) = channel(&buffers);
        assert!(sends_at_once(&first, 1000).await);
        assert!(sends_at_once(&second, 500).await);
        assert!(!sends_at_once(&second, 1).await, "the total is taken");
        first_stream.next().await.unwrap().unwrap();
        assert!(sends_at_once(&second, 500).await);
        assert_eq!(buffers.held(), 1000);
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_with_input_stalled() {
        let buffers = UploadBuffers::new(1000, 1000);
        let (sender, mut stream) = channel(&buffers);
        let stalled = futures::stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(futures::stream::pending());
        let idle = std::time::Duration::from_millis(100);
        tokio::spawn(async move { pump(stalled.boxed(), &sender, 100, idle).await });
        assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(stream.next().await, Some(Err(model::Error::InputStalled(_)))));
        assert!(stream.next().await.is_none());
    }
}
