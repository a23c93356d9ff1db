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
//!                                             another instance, if given); prints delivered and
//!                                             latency
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
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

fn sent_us(text: &str) -> Option<u64> {
    let at = text.find("\"sent_us\":")? + "\"sent_us\":".len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn notify(base: &str, subscribers: usize, rate: u64, seconds: u64, publish_base: &str) {
    let ws = format!("{}/ws/notifications", base.replacen("http://", "ws://", 1));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        subscribers * (rate * seconds) as usize,
    )));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.expect("connect");
        let _welcome = socket.next().await;
        let subscribe = r#"{"action":"subscribe","notification_types":["custom_event"]}"#;
        socket.send(Message::Text(subscribe.into())).await.unwrap();
        let _confirmed = socket.next().await;
        let latencies = latencies.clone();
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                // A thousand subscribers in this one process: read the send time without a full
                // JSON parse, so the client's own work does not dominate what is measured.
                if let Message::Text(text) = message
                    && let Some(sent) = sent_us(&text)
                {
                    mine.push(micros_now().saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    let client = reqwest::Client::new();
    let total = rate * seconds;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let body = serde_json::json!({"notification_type": "custom_event", "data": {"i": i, "sent_us": micros_now()}});
        client
            .post(format!("{publish_base}/api/v1/notifications"))
            .json(&body)
            .send()
            .await
            .expect("publish");
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut all = latencies.lock().unwrap().clone();
    all.sort_unstable();
    let pick = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{} {} {:.2} {:.2}",
        delivered.load(Ordering::Relaxed),
        total * subscribers as u64,
        pick(0.5),
        pick(0.99)
    );
}
