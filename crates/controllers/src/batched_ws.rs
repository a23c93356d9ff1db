//! A WebSocket whose sender writes many messages as one chunk, and which reads a feed of chunks
//! itself.
//!
//! actix-ws's `Session` hands every message to the connection through a channel of its own: a
//! reservation, a wake-up and an encoding for each. Fanning a thousand events a second out to a
//! thousand subscribers makes that a million times a second, most of a busy server's time. Here
//! the sender encodes the messages that are ready into one buffer and passes the buffer on whole,
//! and chunks that come from elsewhere (the notification hub's batches, already framed) are read
//! by the connection itself, as the socket takes them, through a [`Feed`]: no task wakes up to
//! pass them on. Incoming frames are decoded with actix-http's codec, as actix-ws does.

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

/// Chunks the connection reads by itself whenever the socket can take more and the sender has
/// nothing waiting.
pub trait Feed: Unpin + 'static {
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<Fed>;
}

/// What a feed gives.
pub enum Fed {
    /// Frames to write.
    Chunk(Bytes),
    /// The connection's last frames (a close frame among them): written, then the connection ends.
    Last(Bytes),
    /// The feed has nothing more; the sender's messages still go.
    Ended,
}

/// Frames a text message into `buffer`.
pub fn frame_text(buffer: &mut BytesMut, text: &str) {
    Parser::write_message(buffer, text, OpCode::Text, true, false);
}

/// Frames a close into `buffer`; a description too long for a control frame is cut (on a
/// character boundary).
pub fn frame_close(buffer: &mut BytesMut, reason: Option<CloseReason>) {
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
    Parser::write_close(buffer, reason, false);
}

/// Accepts the upgrade: the response to return, the sending half and the incoming messages
/// (a frame over `max_frame` bytes ends them with [`ProtocolError::Overflow`]). The connection
/// also writes what `feed` gives, after whatever the sender has waiting.
pub fn handle(
    req: &HttpRequest,
    body: web::Payload,
    max_frame: usize,
    feed: impl Feed,
) -> actix_web::Result<(HttpResponse, Outgoing, Incoming)> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let (chunks, queued) = mpsc::channel(CHUNKS_QUEUED);
    let (closed, connection_closed) = oneshot::channel();
    let written = Chunks {
        queued,
        feed: Some(feed),
        feed_held: false,
        last_written: false,
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

/// What the sender hands the connection.
enum Outbound {
    Chunk(Bytes),
    /// The feed waits (see [`Outgoing::hold_feed`]).
    HoldFeed,
    ReleaseFeed,
}

/// The sending half: messages are framed into a buffer with [`Outgoing::push_text`] and go out
/// together on [`Outgoing::flush`].
pub struct Outgoing {
    chunks: mpsc::Sender<Outbound>,
    buffer: BytesMut,
}

impl Outgoing {
    /// Adds a text message to the next chunk.
    pub fn push_text(&mut self, text: &str) {
        frame_text(&mut self.buffer, text);
    }

    /// Hands what was pushed to the connection; waits while the client is not reading.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.send(Outbound::Chunk(chunk)).await
    }

    async fn send(&self, outbound: Outbound) -> Result<(), Closed> {
        self.chunks.send(outbound).await.map_err(|_| Closed)
    }

    /// Sends one text message (with anything pushed before it).
    pub async fn text(&mut self, text: &str) -> Result<(), Closed> {
        self.push_text(text);
        self.flush().await
    }

    /// From here until [`Outgoing::release_feed`], the connection writes only what this sender
    /// hands it: what the feed has waits. (Messages handed over before this call and the feed's
    /// chunks keep the order the connection wrote them in.)
    pub async fn hold_feed(&mut self) -> Result<(), Closed> {
        self.flush().await?;
        self.send(Outbound::HoldFeed).await
    }

    /// Lets the feed's chunks go again, after what was handed over before.
    pub async fn release_feed(&mut self) -> Result<(), Closed> {
        self.flush().await?;
        self.send(Outbound::ReleaseFeed).await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        Parser::write_message(&mut self.buffer, payload, OpCode::Pong, true, false);
        self.flush().await
    }

    /// Sends a close frame and ends the connection once it is written.
    pub async fn close(mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        frame_close(&mut self.buffer, reason);
        self.flush().await
    }
}

/// The response body: the chunks the sender hands over, in order, until it is dropped; between
/// them, when the sender has nothing waiting, the feed's.
struct Chunks<F> {
    queued: mpsc::Receiver<Outbound>,
    /// None once it has ended.
    feed: Option<F>,
    feed_held: bool,
    /// The feed gave the connection's last frames.
    last_written: bool,
    /// Dropped with the body, which tells the incoming side that the connection is gone.
    _closed: oneshot::Sender<()>,
}

impl<F: Feed> Stream for Chunks<F> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.last_written {
            return Poll::Ready(None);
        }
        loop {
            match this.queued.poll_recv(cx) {
                Poll::Ready(Some(Outbound::Chunk(chunk))) => return Poll::Ready(Some(Ok(chunk))),
                Poll::Ready(Some(Outbound::HoldFeed)) => this.feed_held = true,
                Poll::Ready(Some(Outbound::ReleaseFeed)) => this.feed_held = false,
                // The sender is done (its close frame is written).
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        let Some(feed) = this.feed.as_mut().filter(|_| !this.feed_held) else {
            return Poll::Pending;
        };
        match feed.poll_feed(cx) {
            Poll::Ready(Fed::Chunk(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Fed::Last(chunk)) => {
                this.last_written = true;
                this.feed = None;
                Poll::Ready(Some(Ok(chunk)))
            }
            // The sender's channel has the waker: its next message wakes the connection.
            Poll::Ready(Fed::Ended) => {
                this.feed = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
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
        upgrade_with(body.freeze(), max_frame, Scripted(mpsc::unbounded_channel().1)).await
    }

    /// A feed that gives what the test sends it, and ends when the test drops its sender.
    struct Scripted(mpsc::UnboundedReceiver<Fed>);

    impl Feed for Scripted {
        fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<Fed> {
            self.0.poll_recv(cx).map(|fed| fed.unwrap_or(Fed::Ended))
        }
    }

    /// The next chunk the connection writes, or None while it has nothing to write.
    fn written_now(body: &mut actix_web::body::BoxBody) -> Option<Option<Bytes>> {
        let waker = futures::task::noop_waker();
        match Pin::new(body).poll_next(&mut Context::from_waker(&waker)) {
            Poll::Ready(chunk) => Some(chunk.map(|chunk| chunk.unwrap())),
            Poll::Pending => None,
        }
    }

    fn text_frame(text: &str) -> Bytes {
        let mut buffer = BytesMut::new();
        frame_text(&mut buffer, text);
        buffer.freeze()
    }

    /// An upgrade request whose body is these bytes.
    async fn upgrade_with(body: Bytes, max_frame: usize, feed: impl Feed) -> (HttpResponse, Outgoing, Incoming) {
        let (req, mut payload) = TestRequest::get()
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .set_payload(body)
            .to_http_parts();
        let payload = web::Payload::from_request(&req, &mut payload).await.unwrap();
        handle(&req, payload, max_frame, feed).unwrap()
    }

    #[actix_web::test]
    async fn the_feed_goes_out_when_the_sender_has_nothing_waiting_and_waits_while_held() {
        let (feed, script) = mpsc::unbounded_channel();
        let (response, mut outgoing, _incoming) = upgrade_with(Bytes::new(), 1024, Scripted(script)).await;
        let mut body = response.into_body();
        feed.send(Fed::Chunk(text_frame("fed 1"))).unwrap();
        outgoing.text("a").await.unwrap();
        assert_eq!(
            written_now(&mut body),
            Some(Some(text_frame("a"))),
            "the sender's first"
        );
        assert_eq!(written_now(&mut body), Some(Some(text_frame("fed 1"))));
        assert_eq!(written_now(&mut body), None);

        outgoing.hold_feed().await.unwrap();
        feed.send(Fed::Chunk(text_frame("fed 2"))).unwrap();
        outgoing.text("b").await.unwrap();
        assert_eq!(written_now(&mut body), Some(Some(text_frame("b"))));
        assert_eq!(written_now(&mut body), None, "held");
        outgoing.release_feed().await.unwrap();
        assert_eq!(written_now(&mut body), Some(Some(text_frame("fed 2"))));

        drop(feed);
        assert_eq!(written_now(&mut body), None, "the feed ended");
        outgoing.text("c").await.unwrap();
        assert_eq!(
            written_now(&mut body),
            Some(Some(text_frame("c"))),
            "the sender's messages still go"
        );
        outgoing.close(None).await.unwrap();
        assert!(matches!(written_now(&mut body), Some(Some(_))), "the close frame");
        assert_eq!(written_now(&mut body), Some(None), "then the connection ends");
    }

    #[actix_web::test]
    async fn the_feed_s_last_chunk_ends_the_connection() {
        let (feed, script) = mpsc::unbounded_channel();
        let (response, _outgoing, _incoming) = upgrade_with(Bytes::new(), 1024, Scripted(script)).await;
        let mut body = response.into_body();
        let mut last = BytesMut::new();
        frame_close(&mut last, Some(CloseCode::Policy.into()));
        feed.send(Fed::Last(last.clone().freeze())).unwrap();
        feed.send(Fed::Chunk(text_frame("never"))).unwrap();
        assert_eq!(written_now(&mut body), Some(Some(last.freeze())));
        assert_eq!(written_now(&mut body), Some(None), "nothing after the last chunk");
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
        let (_response, _outgoing, mut incoming) =
            upgrade_with(Bytes::from(body), 64, Scripted(mpsc::unbounded_channel().1)).await;
        assert!(matches!(incoming.next().await, Some(Err(ProtocolError::Overflow))));
        assert!(incoming.next().await.is_none());
    }
}
