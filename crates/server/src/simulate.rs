//! `ipfs-stream simulate`: synthetic viewers for a running server, so the dashboard, the metrics and
//! the anomaly detector have real signals. It adds media of several bitrates, then viewers join at
//! random times, watch one item over HTTP ranges, WebSocket or SSE at its bitrate, leave and come
//! back (churn); some drop abruptly; a store-latency fault can be injected midway. Everything is
//! bounded: at most 2000 viewers, one hour, loopback servers only. WebRTC viewers are not simulated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};

use crate::cli::SimulateOptions;
use crate::error::Error;

/// Bytes read per HTTP range request.
const RANGE_BYTES: u64 = 256 * 1024;

#[derive(Clone, Debug)]
struct Media {
    cid: String,
    size: u64,
    /// Bytes per second a viewer of it consumes.
    byte_rate: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    HttpRange,
    WebSocket,
    Sse,
    /// WHEP playback of a short real clip, by a webrtc-rs receiver.
    Webrtc,
}

const TRANSPORTS: [Transport; 4] = [
    Transport::HttpRange,
    Transport::WebSocket,
    Transport::Sse,
    Transport::Webrtc,
];

/// The clip WebRTC viewers play (2 s of VP8 and Opus; a viewer replays it until its session ends).
const CLIP: &[u8] = include_bytes!("../../../tests/fixtures/media/vp8-opus.webm");

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::HttpRange => "http_range",
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::Webrtc => "webrtc",
        }
    }
}

/// What the run did, per transport.
#[derive(Default)]
struct Counts {
    sessions: [AtomicU64; 4],
    bytes: [AtomicU64; 4],
    errors: [AtomicU64; 4],
    dropped: AtomicU64,
}

fn index(transport: Transport) -> usize {
    TRANSPORTS.iter().position(|t| *t == transport).expect("listed")
}

/// Checks the options: bounded, and only a server on this machine.
fn validate(options: &SimulateOptions) -> Result<String, Error> {
    let bad = |message: String| Error::Config(message);
    if !(1..=2000).contains(&options.viewers) {
        return Err(bad("viewers: must be between 1 and 2000".into()));
    }
    if !(1..=3600).contains(&options.duration) {
        return Err(bad("duration: must be between 1 and 3600 seconds".into()));
    }
    if !(1..=16).contains(&options.media) {
        return Err(bad("media: must be between 1 and 16".into()));
    }
    if !(0.0..=1.0).contains(&options.drop_rate) {
        return Err(bad("drop_rate: must be between 0 and 1".into()));
    }
    let base = options.server.trim_end_matches('/').to_owned();
    let host = base
        .strip_prefix("http://")
        .ok_or_else(|| bad(format!("server: {base:?} must be an http:// URL")))?;
    let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(bad(format!("server: {base:?} is not on this machine (loopback only)")));
    }
    Ok(base)
}

pub async fn run(options: SimulateOptions) -> Result<(), Error> {
    let base = validate(&options)?;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &options.token {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Error::Config("--token: not a valid header value".into()))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(options.duration + 30))
        .default_headers(headers)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let media = add_media(&client, &base, options.media, &mut rng).await?;
    let clip = add_clip(&client, &base).await?;
    eprintln!(
        "simulate: {} media added; {} viewers for {} s",
        media.len(),
        options.viewers,
        options.duration
    );
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let end = started + Duration::from_secs(options.duration);
    let mut tasks = Vec::new();
    for viewer in 0..options.viewers {
        let seed = rng.next_u64();
        let (client, base, media, counts) = (client.clone(), base.clone(), media.clone(), counts.clone());
        let clip = clip.clone();
        let drop_rate = options.drop_rate;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ viewer as u64);
            // Viewers arrive over the first quarter of the run.
            let arrival = rng.random_range(0.0..0.25) * (end - Instant::now()).as_secs_f64();
            tokio::time::sleep(Duration::from_secs_f64(arrival)).await;
            while Instant::now() < end {
                let transport = TRANSPORTS[rng.random_range(0..TRANSPORTS.len())];
                let item = if transport == Transport::Webrtc {
                    &clip
                } else {
                    &media[rng.random_range(0..media.len())]
                };
                let watch = Duration::from_secs_f64(rng.random_range(3.0..20.0)).min(end - Instant::now());
                let drops = rng.random_bool(drop_rate);
                counts.sessions[index(transport)].fetch_add(1, Ordering::Relaxed);
                if drops {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                }
                let session = Session {
                    client: &client,
                    base: &base,
                    media: item,
                    watch: if drops { watch / 3 } else { watch },
                    counts: &counts,
                    transport,
                };
                if let Err(error) = session.run().await {
                    tracing::debug!(%error, transport = transport.name(), "session failed");
                    counts.errors[index(transport)].fetch_add(1, Ordering::Relaxed);
                }
                // A pause between sessions: the churn.
                let pause = Duration::from_secs_f64(rng.random_range(0.5..4.0));
                if Instant::now() + pause >= end {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    if let Some(latency) = options.fault_latency_ms {
        let at = Duration::from_secs(options.fault_at.min(options.duration));
        tokio::time::sleep_until((started + at).into()).await;
        let response = client
            .post(format!("{base}/api/v1/faults"))
            .json(&json!({"store_latency_ms": latency, "duration_s": options.fault_duration}))
            .send()
            .await
            .map_err(|e| Error::Config(format!("injecting the fault: {e}")))?;
        eprintln!("simulate: store latency {latency} ms injected: {}", response.status());
    }
    for task in tasks {
        let _ = task.await;
    }
    let report: serde_json::Map<String, Value> = TRANSPORTS
        .iter()
        .map(|t| {
            let i = index(*t);
            let entry = json!({
                "sessions": counts.sessions[i].load(Ordering::Relaxed),
                "bytes": counts.bytes[i].load(Ordering::Relaxed),
                "errors": counts.errors[i].load(Ordering::Relaxed),
            });
            (t.name().to_owned(), entry)
        })
        .collect();
    let summary = json!({
        "viewers": options.viewers,
        "seconds": started.elapsed().as_secs_f64(),
        "dropped_sessions": counts.dropped.load(Ordering::Relaxed),
        "transports": report,
    });
    println!("{summary}");
    Ok(())
}

/// Media of 8 to 24 MiB (more than a socket's buffers, so a paced viewer keeps its stream open on
/// the server) at 256 kbit/s to 4 Mbit/s.
async fn add_media(client: &reqwest::Client, base: &str, count: u32, rng: &mut StdRng) -> Result<Vec<Media>, Error> {
    let mut media = Vec::new();
    for n in 0..count {
        let size = rng.random_range(8u64 << 20..24 << 20);
        let mut data = vec![0u8; size as usize];
        rng.fill_bytes(&mut data);
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(data).file_name(format!("simulated-{n}.bin")),
        );
        let response = client
            .post(format!("{base}/api/v1/content"))
            .multipart(form)
            .send()
            .await
            .map_err(|e| Error::Config(format!("server: cannot add media at {base}: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Config(format!(
                "server: adding media gave {}",
                response.status()
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| Error::Config(format!("server: {e}")))?;
        let cid = body["cid"].as_str().unwrap_or_default().to_owned();
        let kbps = [256u64, 512, 1000, 2000, 4000][rng.random_range(0..5)];
        media.push(Media {
            cid,
            size,
            byte_rate: kbps * 1000 / 8,
        });
    }
    Ok(media)
}

/// Stores the WebRTC clip.
async fn add_clip(client: &reqwest::Client, base: &str) -> Result<Media, Error> {
    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(CLIP).file_name("clip.webm"));
    let body: Value = client
        .post(format!("{base}/api/v1/content"))
        .multipart(form)
        .send()
        .await
        .map_err(|e| Error::Config(format!("server: cannot add the clip at {base}: {e}")))?
        .json()
        .await
        .map_err(|e| Error::Config(format!("server: {e}")))?;
    Ok(Media {
        cid: body["cid"].as_str().unwrap_or_default().to_owned(),
        size: CLIP.len() as u64,
        byte_rate: CLIP.len() as u64 / 2,
    })
}

struct Session<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    media: &'a Media,
    watch: Duration,
    counts: &'a Counts,
    transport: Transport,
}

type SessionResult = Result<(), String>;

impl Session<'_> {
    async fn run(&self) -> SessionResult {
        let until = Instant::now() + self.watch;
        match self.transport {
            Transport::HttpRange => self.ranges(until).await,
            Transport::WebSocket => self.websocket(until).await,
            Transport::Sse => self.sse(until).await,
            Transport::Webrtc => self.webrtc(until).await,
        }
    }

    /// WHEP playback of the clip, again each time it ends, until the session's time is up.
    async fn webrtc(&self, until: Instant) -> SessionResult {
        while Instant::now() < until {
            let (receiver, _) = model::webrtc::Receiver::new([127, 0, 0, 1].into())
                .await
                .map_err(|e| e.to_string())?;
            let offer = receiver
                .offer(Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            let response = self
                .client
                .post(format!("{}/whep/{}", self.base, self.media.cid))
                .header("content-type", "application/sdp")
                .body(offer)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().as_u16() != 201 {
                receiver.close().await;
                return Err(format!("WHEP gave {}", response.status()));
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let answer = response.text().await.map_err(|e| e.to_string())?;
            receiver.accept_answer(&answer).await.map_err(|e| e.to_string())?;
            // The clip lasts 2 s; a little more lets its last frames arrive.
            let clip_end = (Instant::now() + Duration::from_millis(2500)).min(until);
            tokio::time::sleep_until(clip_end.into()).await;
            self.count(receiver.frames().iter().map(|f| f.bytes as u64).sum());
            if let Some(location) = location {
                let _ = self.client.delete(format!("{}{location}", self.base)).send().await;
            }
            receiver.close().await;
        }
        Ok(())
    }

    fn count(&self, bytes: u64) {
        self.counts.bytes[index(self.transport)].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sleeps so that `consumed` bytes since `started` match the media's bitrate.
    async fn pace(&self, started: Instant, consumed: u64) {
        let due = started + Duration::from_secs_f64(consumed as f64 / self.media.byte_rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }

    /// Range requests of 256 KiB, one after the other, as a player fetches segments.
    async fn ranges(&self, until: Instant) -> SessionResult {
        let started = Instant::now();
        let (mut offset, mut consumed) = (0u64, 0u64);
        while Instant::now() < until {
            let end = (offset + RANGE_BYTES).min(self.media.size) - 1;
            let response = self
                .client
                .get(format!("{}/ipfs/{}", self.base, self.media.cid))
                .header("range", format!("bytes={offset}-{end}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().as_u16() != 206 {
                return Err(format!("range request gave {}", response.status()));
            }
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            self.count(body.len() as u64);
            consumed += body.len() as u64;
            offset = if end + 1 >= self.media.size { 0 } else { end + 1 };
            self.pace(started, consumed).await;
        }
        Ok(())
    }

    /// A WebSocket download read at the bitrate; the session ends by closing the socket.
    async fn websocket(&self, until: Instant) -> SessionResult {
        let url = format!(
            "{}/ws/stream/{}?chunk_size=65536",
            self.base.replacen("http://", "ws://", 1),
            self.media.cid
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut consumed = 0u64;
        while Instant::now() < until {
            let next = tokio::time::timeout_at(until.into(), socket.next()).await;
            match next {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(message))) => {
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = &message
                        && text.contains("\"error\"")
                    {
                        return Err(text.to_string());
                    }
                    let len = message.len() as u64;
                    self.count(len);
                    consumed += len;
                    self.pace(started, consumed).await;
                }
            }
        }
        let _ = socket.close(None).await;
        Ok(())
    }

    /// An SSE download read at the bitrate (base64 makes it a third larger on the wire).
    async fn sse(&self, until: Instant) -> SessionResult {
        let response = self
            .client
            .get(format!("{}/sse/stream/{}?chunk_size=65536", self.base, self.media.cid))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("SSE gave {}", response.status()));
        }
        let mut body = response.bytes_stream();
        let started = Instant::now();
        let mut consumed = 0u64;
        while Instant::now() < until {
            match tokio::time::timeout_at(until.into(), body.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(chunk))) => {
                    let len = chunk.len() as u64;
                    self.count(len);
                    consumed += len * 3 / 4;
                    self.pace(started, consumed).await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(server: &str, viewers: u32) -> SimulateOptions {
        SimulateOptions {
            server: server.into(),
            viewers,
            duration: 10,
            media: 2,
            drop_rate: 0.1,
            fault_latency_ms: None,
            fault_at: 5,
            fault_duration: 2,
            seed: 1,
            token: None,
        }
    }

    #[test]
    fn only_bounded_runs_against_this_machine_are_accepted() {
        assert_eq!(
            validate(&options("http://127.0.0.1:8080/", 5)).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(validate(&options("http://localhost:9", 5)).is_ok());
        for (server, viewers, field) in [
            ("http://example.com:8080", 5, "server"),
            ("https://127.0.0.1:8080", 5, "server"),
            ("http://127.0.0.1:8080", 0, "viewers"),
            ("http://127.0.0.1:8080", 2001, "viewers"),
        ] {
            let error = validate(&options(server, viewers)).unwrap_err().to_string();
            assert!(error.contains(field), "{server} {viewers}: {error}");
        }
    }
}
