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
//!                                             latency (ms) and the rate events were published at
//! ```

use std::sync::Arc;
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
    let total = rate * seconds;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(subscribers * total as usize)));
    let mut tasks = Vec::new();
    let (go, ready) = tokio::sync::watch::channel(None::<Instant>);
    for _ in 0..subscribers {
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.expect("connect");
        let _welcome = socket.next().await;
        let subscribe = r#"{"action":"subscribe","notification_types":["custom_event"]}"#;
        socket.send(Message::Text(subscribe.into())).await.unwrap();
        let _confirmed = socket.next().await;
        let latencies = latencies.clone();
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
            while (mine.len() as u64) < total {
                let message = tokio::select! {
                    message = socket.next() => message,
                    _ = &mut deadline => break,
                };
                let Some(Ok(message)) = message else { break };
                // A thousand subscribers in this one process: read the send time without a full
                // JSON parse, so the client's own work does not dominate what is measured.
                if let Message::Text(text) = message
                    && let Some(sent) = sent_us(&text)
                {
                    mine.push(micros_now().saturating_sub(sent));
                }
            }
            latencies.lock().unwrap().extend(mine);
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
        "{} {} {:.2} {:.2} {:.0}",
        all.len(),
        accepted * subscribers as u64,
        pick(0.5),
        pick(0.99),
        accepted as f64 / published_in.as_secs_f64().max(1e-3)
    );
}
