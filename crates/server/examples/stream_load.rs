//! Load generator for `scripts/bench-streaming.sh` and `scripts/bench-cluster.sh` (bounded: every
//! mode stops by itself).
//!
//! ```text
//! stream_load ws-get URL                      one WebSocket download; prints MiB/s
//! stream_load ws-many URL CLIENTS [--stall]   CLIENTS concurrent downloads (plus one client that
//!                                             reads nothing); prints the aggregate MiB/s
//! stream_load notify BASE SUBSCRIBERS RATE SECONDS [PUBLISH_BASE]
//!                                             SUBSCRIBERS on /ws/notifications, RATE custom events
//!                                             per second for SECONDS (published on PUBLISH_BASE,
//!                                             another instance, if given), each event posted when
//!                                             it is due; prints delivered, expected, p50 and p99
//!                                             latency (ms), the rate events were published at and
//!                                             the subscribers' reads once it started (each takes
//!                                             what one write of the server's, or more, brought)
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Downloads one object over a WebSocket; returns the payload bytes.
async fn ws_get(url: &str) -> u64 {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let mut bytes = 0u64;
    while let Some(message) = socket.next().await {
        match message.expect("a message") {
            Message::Binary(chunk) => bytes += chunk.len() as u64,
            Message::Text(text) if text.contains("\"complete\"") => break,
            Message::Text(text) if text.contains("\"error\"") => panic!("{text}"),
            Message::Close(_) => break,
            _ => {}
        }
    }
    bytes
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ws-get") => {
            let started = Instant::now();
            let bytes = ws_get(&args[1]).await;
            println!("{:.1}", bytes as f64 / 1048576.0 / started.elapsed().as_secs_f64());
        }
        Some("ws-many") => {
            let url = args[1].clone();
            let clients: usize = args[2].parse().expect("a client count");
            let stall = args.iter().any(|a| a == "--stall");
            // The staller takes the metadata and then reads nothing until the others are done.
            let staller = if stall {
                let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
                let _ = socket.next().await;
                Some(socket)
            } else {
                None
            };
            let started = Instant::now();
            let downloads: Vec<_> = (0..clients)
                .map(|_| {
                    tokio::spawn({
                        let url = url.clone();
                        async move { ws_get(&url).await }
                    })
                })
                .collect();
            let mut total = 0u64;
            for download in downloads {
                total += download.await.expect("a download");
            }
            println!("{:.1}", total as f64 / 1048576.0 / started.elapsed().as_secs_f64());
            drop(staller);
        }
        Some("notify") => {
            // Events may be published on another instance than the one subscribed to.
            let publish_base = args.get(5).unwrap_or(&args[1]);
            notify(
                &args[1],
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                publish_base,
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: stream_load ws-get URL | ws-many URL CLIENTS [--stall] | notify BASE SUBSCRIBERS RATE SECONDS [PUBLISH_BASE]"
            );
            std::process::exit(2);
        }
    }
}

fn sent_us(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let at = text.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits]).ok()?.parse().ok()
}

/// A `/ws/notifications` subscriber that does only what the measurement needs: it reads into one
/// buffer it keeps and finds each text message's frame, without a message allocated, checked and
/// queued for each. A thousand of these share the machine with the server, and whatever they
/// spend per message is measured as the server's latency (tungstenite, which zero-fills its read
/// buffer before every read, took more CPU than the server it measured).
struct LeanSubscriber {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` read and not yet parsed: `buffer[parsed..filled]`.
    parsed: usize,
    filled: usize,
}

impl LeanSubscriber {
    async fn connect(base: &str) -> std::io::Result<Self> {
        let host = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let mut socket = LeanSubscriber {
            stream,
            buffer: vec![0; 64 * 1024],
            parsed: 0,
            filled: 0,
        };
        let request = format!(
            "GET /ws/notifications HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.stream.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if !socket.read().await? {
                return Err(std::io::Error::other("closed during the handshake"));
            }
            if let Some(at) = socket.buffer[..socket.filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        if !socket.buffer.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&socket.buffer[..head_end]).into_owned();
            return Err(std::io::Error::other(format!("not upgraded: {head}")));
        }
        socket.parsed = head_end;
        Ok(socket)
    }

    /// Sends a text message, masked as a client must.
    async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let mask = [0x5a, 0x17, 0xc3, 0x88];
        let mut frame = vec![0x81];
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// Reads what has arrived; false once the server closed the connection.
    async fn read(&mut self) -> std::io::Result<bool> {
        if self.parsed > 0 && self.parsed == self.filled {
            (self.parsed, self.filled) = (0, 0);
        } else if self.buffer.len() - self.filled < 4096 {
            // Room for the next read: move the part of a message still waiting to the front,
            // or grow for a message larger than the buffer.
            self.buffer.copy_within(self.parsed..self.filled, 0);
            (self.parsed, self.filled) = (0, self.filled - self.parsed);
            if self.buffer.len() - self.filled < 4096 {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
        }
        let read = self.stream.read(&mut self.buffer[self.filled..]).await?;
        self.filled += read;
        Ok(read > 0)
    }

    /// Hands each whole text message read so far to `each`.
    fn take_texts(&mut self, mut each: impl FnMut(&[u8])) {
        while let Some((opcode, payload, length)) = frame_at(&self.buffer[self.parsed..self.filled]) {
            if opcode == 1 {
                each(&self.buffer[self.parsed + payload.start..self.parsed + payload.end]);
            }
            self.parsed += length;
        }
    }
}

/// The first whole frame from the server at the start of `bytes`: its opcode, where its payload
/// is and its whole length. Server frames are never masked.
fn frame_at(bytes: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (length, header) = match second & 0x7f {
        126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    (bytes.len() >= header + length).then_some((first & 0x0f, header..header + length, header + length))
}

async fn notify(base: &str, subscribers: usize, rate: u64, seconds: u64, publish_base: &str) {
    let total = rate * seconds;
    let mut tasks = Vec::new();
    let (go, ready) = tokio::sync::watch::channel(None::<Instant>);
    for _ in 0..subscribers {
        let mut socket = LeanSubscriber::connect(base).await.expect("connect");
        let subscribe = r#"{"action":"subscribe","notification_types":["custom_event"]}"#;
        socket.send_text(subscribe).await.expect("subscribe");
        let mut ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let started = *ready
                .wait_for(Option::is_some)
                .await
                .expect("the publisher starts")
                .as_ref()
                .expect("a start");
            // Every subscriber stops once it has all the events, or a few seconds after the last
            // one is due: one deadline per subscriber, not a timer per message (the subscribers
            // share the machine with the server, and their own costs would be measured as its
            // latency).
            let deadline = tokio::time::sleep_until((started + Duration::from_secs(seconds + 5)).into());
            tokio::pin!(deadline);
            let mut mine = Vec::with_capacity(total as usize);
            let mut reads = 0u64;
            while (mine.len() as u64) < total {
                let read = tokio::select! {
                    read = socket.read() => read,
                    _ = &mut deadline => break,
                };
                if !matches!(read, Ok(true)) {
                    break;
                }
                // Every message of one read arrived at the same moment.
                let now = micros_now();
                reads += 1;
                socket.take_texts(|text| {
                    if let Some(sent) = sent_us(text) {
                        mine.push(now.saturating_sub(sent));
                    }
                });
            }
            // Handed back, and gathered once every subscriber is done: copying them into one
            // list as each finished held the runtime's threads while others still measured.
            (mine, reads)
        }));
    }
    // The publisher keeps its schedule whatever the subscribers cost: it runs on a thread of its
    // own, and each event is posted when it is due, without waiting for the answer to the one
    // before (waiting would cap the rate at one event per round trip, and a loaded server's round
    // trip is milliseconds).
    let publish_base = publish_base.to_owned();
    let publisher = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            go.send_replace(Some(started));
            let mut posts = tokio::task::JoinSet::new();
            for i in 0..total {
                let due = started + Duration::from_micros(i * 1_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                let body =
                    serde_json::json!({"notification_type": "custom_event", "data": {"i": i, "sent_us": micros_now()}});
                let post = client
                    .post(format!("{publish_base}/api/v1/notifications"))
                    .json(&body)
                    .send();
                posts.spawn(async move { post.await.is_ok_and(|answer| answer.status().is_success()) });
            }
            let published_in = started.elapsed();
            let accepted = posts.join_all().await.into_iter().filter(|ok| *ok).count() as u64;
            (accepted, published_in)
        })
    });
    let (accepted, published_in) = tokio::task::spawn_blocking(move || publisher.join().expect("the publisher"))
        .await
        .expect("the publisher");
    let mut all = Vec::with_capacity(subscribers * total as usize);
    let mut reads = 0;
    for task in tasks {
        let (mine, its_reads) = task.await.unwrap_or_default();
        all.extend(mine);
        reads += its_reads;
    }
    all.sort_unstable();
    let pick = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{} {} {:.2} {:.2} {:.0} {reads}",
        all.len(),
        accepted * subscribers as u64,
        pick(0.5),
        pick(0.99),
        accepted as f64 / published_in.as_secs_f64().max(1e-3)
    );
}
