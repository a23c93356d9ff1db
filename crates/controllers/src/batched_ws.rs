//! A WebSocket whose sender writes many messages as one chunk.
//!
//! actix-ws's `Session` hands every message to the connection through a channel of its own: a
//! reservation, a wake-up and an encoding for each. Fanning a thousand events a second out to a
//! thousand subscribers makes that a million times a second, most of a busy server's time. Here
//! the sender encodes the messages that are ready into one buffer and passes the buffer on whole,
//! so a batch of events costs one channel message and one socket write. Incoming frames are
//! decoded with actix-http's codec, as actix-ws does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::body::{BodyStream, MessageBody};
use actix_http::ws::{Codec, Frame, Message, OpCode, Parser, ProtocolError};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures::Stream;
use tokio::sync::{mpsc, oneshot};

pub use actix_http::ws::{CloseCode, CloseReason};

/// Chunks waiting for the connection to write them. Each is a batch of messages, so a few are
/// plenty; a full queue means the client is not reading, and the sender waits.
const CHUNKS_QUEUED: usize = 4;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Control frames carry at most 125 bytes (RFC 6455 5.5); a close frame's code takes two.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The connection is closed: nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

/// Accepts the upgrade: the response to return, the sending half and the incoming messages
/// (a frame over `max_frame` bytes ends them with [`ProtocolError::Overflow`]).
pub fn handle(
    req: &HttpRequest,
    body: web::Payload,
    max_frame: usize,
) -> actix_web::Result<(HttpResponse, Outgoing, Incoming)> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let (chunks, queued) = mpsc::channel(CHUNKS_QUEUED);
    let (closed, connection_closed) = oneshot::channel();
    let written = Chunks {
        queued,
        _closed: closed,
    };
    Ok((
        response.message_body(BodyStream::new(written).boxed())?.into(),
        Outgoing {
            chunks,
            buffer: BytesMut::new(),
        },
        Incoming {
            payload: body,
            connection_closed: Some(connection_closed),
            buffer: BytesMut::new(),
            codec: Codec::new().max_size(max_frame),
            max_frame,
            ended: false,
        },
    ))
}

/// The sending half: messages are framed into a buffer with [`Outgoing::push_text`] and go out
/// together on [`Outgoing::flush`].
pub struct Outgoing {
    chunks: mpsc::Sender<Bytes>,
    buffer: BytesMut,
}

impl Outgoing {
    /// Adds a text message to the next chunk.
    pub fn push_text(&mut self, text: &str) {
        // Framed straight from the text: a clone of a text that a thousand subscribers share
        // would contend for its one reference count.
        Parser::write_message(&mut self.buffer, text, OpCode::Text, true, false);
    }

    /// Hands what was pushed to the connection; waits while the client is not reading.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.chunks.send(chunk).await.map_err(|_| Closed)
    }

    /// Sends one text message (with anything pushed before it).
    pub async fn text(&mut self, text: &str) -> Result<(), Closed> {
        self.push_text(text);
        self.flush().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        Parser::write_message(&mut self.buffer, payload, OpCode::Pong, true, false);
        self.flush().await
    }

    /// Sends a close frame and ends the connection once it is written.
    pub async fn close(mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        let reason = reason.map(|mut reason| {
            if let Some(description) = reason.description.as_mut() {
                let mut end = description.len().min(MAX_CONTROL_PAYLOAD - 2);
                while !description.is_char_boundary(end) {
                    end -= 1;
                }
                description.truncate(end);
            }
            reason
        });
        Parser::write_close(&mut self.buffer, reason, false);
        self.flush().await
    }
}

/// The response body: the chunks the sender hands over, in order, until it is dropped.
struct Chunks {
    queued: mpsc::Receiver<Bytes>,
    /// Dropped with the body, which tells the incoming side that the connection is gone.
    _closed: oneshot::Sender<()>,
}

impl Stream for Chunks {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().queued.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// Messages from the client, as actix-ws gives them.
pub struct Incoming {
    payload: web::Payload,
    connection_closed: Option<oneshot::Receiver<()>>,
    buffer: BytesMut,
    codec: Codec,
    max_frame: usize,
    ended: bool,
}

impl Stream for Incoming {
    type Item = Result<Message, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // A whole frame already read goes first: the payload is read only when one is
            // needed, so what a client sends waits in the connection, not in this buffer (which
            // holds at most one frame, under the limit).
            match this.codec.decode(&mut this.buffer) {
                Err(error) => {
                    this.ended = true;
                    this.buffer.clear();
                    return Poll::Ready(Some(Err(error)));
                }
                Ok(Some(frame)) => return Poll::Ready(Some(message(frame))),
                Ok(None) if this.ended => return Poll::Ready(None),
                Ok(None) => {}
            }
            // The codec names an oversized frame only once all of it is here: a frame that
            // already holds more than the limit is one, and is not read further.
            if this.buffer.len() > this.max_frame + MAX_HEADER {
                this.ended = true;
                this.buffer.clear();
                return Poll::Ready(Some(Err(ProtocolError::Overflow)));
            }
            // The body is gone with the connection: whatever the payload still says, nothing
            // more will come.
            if let Some(closed) = this.connection_closed.as_mut()
                && Pin::new(closed).poll(cx).is_ready()
            {
                this.ended = true;
                this.connection_closed = None;
                continue;
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buffer.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(error))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(error)))));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(bytes) => ByteString::try_from(bytes)
            .map(Message::Text)
            .map_err(|error| ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?,
        Frame::Binary(bytes) => Message::Binary(bytes),
        Frame::Ping(bytes) => Message::Ping(bytes),
        Frame::Pong(bytes) => Message::Pong(bytes),
        Frame::Close(reason) => Message::Close(reason),
        Frame::Continuation(item) => Message::Continuation(item),
    })
}

#[cfg(test)]
mod tests {
    use actix_codec::Encoder;
    use actix_web::FromRequest;
    use actix_web::test::TestRequest;
    use futures::StreamExt;

    use super::*;

    /// An upgrade request whose body is `sent`, as a client would frame it.
    async fn upgrade(sent: Vec<Message>, max_frame: usize) -> (HttpResponse, Outgoing, Incoming) {
        let mut client = Codec::new().client_mode();
        let mut body = BytesMut::new();
        for message in sent {
            client.encode(message, &mut body).unwrap();
        }
        upgrade_with(body.freeze(), max_frame).await
    }

    /// An upgrade request whose body is these bytes.
    async fn upgrade_with(body: Bytes, max_frame: usize) -> (HttpResponse, Outgoing, Incoming) {
        let (req, mut payload) = TestRequest::get()
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .set_payload(body)
            .to_http_parts();
        let payload = web::Payload::from_request(&req, &mut payload).await.unwrap();
        handle(&req, payload, max_frame).unwrap()
    }

    #[actix_web::test]
    async fn messages_pushed_together_go_out_as_one_chunk_in_order() {
        let (response, mut outgoing, _incoming) = upgrade(Vec::new(), 1024).await;
        assert_eq!(response.status(), actix_web::http::StatusCode::SWITCHING_PROTOCOLS);
        outgoing.push_text("a");
        outgoing.push_text("bc");
        outgoing.flush().await.unwrap();
        outgoing.close(Some(CloseCode::Policy.into())).await.unwrap();
        let written = actix_web::body::to_bytes(response.into_body()).await.unwrap();
        assert_eq!(&written[..], b"\x81\x01a\x81\x02bc\x88\x02\x03\xf0");
    }

    #[actix_web::test]
    async fn client_frames_are_read_one_message_at_a_time_and_an_oversized_one_ends_them() {
        let sent = vec![
            Message::Text("first".into()),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Text("x".repeat(100).into()),
            Message::Text("never read".into()),
        ];
        let (_response, _outgoing, mut incoming) = upgrade(sent, 64).await;
        assert!(matches!(incoming.next().await, Some(Ok(Message::Text(text))) if text == "first"));
        assert!(matches!(incoming.next().await, Some(Ok(Message::Ping(bytes))) if &bytes[..] == b"p"));
        assert!(matches!(incoming.next().await, Some(Err(ProtocolError::Overflow))));
        assert!(incoming.next().await.is_none(), "nothing after the oversized frame");
    }

    #[actix_web::test]
    async fn a_frame_announced_over_the_limit_ends_the_messages_before_it_is_all_read() {
        // A text frame of 2^40 bytes, masked, of which 300 arrive: the codec alone would wait for
        // the rest, holding all that comes.
        let mut body = vec![0x81, 0x80 | 127];
        body.extend_from_slice(&(1u64 << 40).to_be_bytes());
        body.extend_from_slice(&[1, 2, 3, 4]);
        body.extend_from_slice(&[b'x'; 300]);
        let (_response, _outgoing, mut incoming) = upgrade_with(Bytes::from(body), 64).await;
        assert!(matches!(incoming.next().await, Some(Err(ProtocolError::Overflow))));
        assert!(incoming.next().await.is_none());
    }
}
