//! The impaired link ([`ipfs_stream::impaired_link`]) as a process, for receivers that are not in
//! Rust (headless Chromium driven from Node). Started with settings, it prints `ready`, then
//! answers one line per command on standard input:
//!   `link <server ip:port>`  opens a link to that server address; prints `linked <port>`, the
//!                            relay's port for the receiver;
//!   `set <key=value> ...`    changes the impairment of every link; prints `ok`;
//!   `counts`                 prints what every link did, as one JSON line.
//! Keys: loss, burst_loss, mean_burst, delay_ms, jitter_ms, rate_kbps (0: no cap), queue_ms,
//! reorder, reorder_ms, upstream_loss, spare_handshake (1: loss takes only RTP and RTCP), seed.
//! It ends when its standard input closes.
//! Usage: impaired_relay [key=value ...]

use std::time::Duration;

use ipfs_stream::impaired_link::{BurstLoss, Impairment, Relay};
use tokio::io::{AsyncBufReadExt, BufReader};

fn apply(impairment: &mut Impairment, setting: &str) -> Result<(), String> {
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| format!("{setting}: not key=value"))?;
    let number: f64 = value.parse().map_err(|_| format!("{key}: {value} is not a number"))?;
    let milliseconds = Duration::from_secs_f64(number.max(0.0) / 1000.0);
    match key {
        "loss" => impairment.loss = number,
        "burst_loss" | "mean_burst" => {
            let mut burst = impairment.burst.unwrap_or(BurstLoss {
                loss: 0.0,
                mean_burst: 1.0,
            });
            if key == "burst_loss" {
                burst.loss = number;
            } else {
                burst.mean_burst = number;
            }
            impairment.burst = (burst.loss > 0.0).then_some(burst);
        }
        "delay_ms" => impairment.delay = milliseconds,
        "jitter_ms" => impairment.jitter = milliseconds,
        "rate_kbps" => impairment.rate_bps = (number > 0.0).then_some((number * 1000.0) as u64),
        "queue_ms" => impairment.queue = milliseconds,
        "reorder" => impairment.reorder = number,
        "reorder_ms" => impairment.reorder_by = milliseconds,
        "upstream_loss" => impairment.upstream_loss = number,
        "spare_handshake" => impairment.spare_handshake = number != 0.0,
        "seed" => impairment.seed = number as u64,
        _ => return Err(format!("{key}: unknown setting")),
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut impairment = Impairment::default();
    for setting in std::env::args().skip(1) {
        if let Err(error) = apply(&mut impairment, &setting) {
            eprintln!("impaired_relay: {error}");
            std::process::exit(2);
        }
    }
    let relay = Relay::new(impairment);
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        let reply = match words.next() {
            Some("link") => match words.next().map(str::parse) {
                Some(Ok(server)) => match relay.open(server).await {
                    Ok(link) => format!("linked {}", link.port),
                    Err(error) => format!("error {error}"),
                },
                _ => "error link needs a server ip:port".to_owned(),
            },
            Some("set") => {
                let mut impairment = relay.impairment();
                match words.try_for_each(|setting| apply(&mut impairment, setting)) {
                    Ok(()) => {
                        relay.set(|current| *current = impairment);
                        "ok".to_owned()
                    }
                    Err(error) => format!("error {error}"),
                }
            }
            Some("counts") => serde_json::to_string(&relay.counts()).unwrap_or_default(),
            _ => format!("error unknown command: {line}"),
        };
        println!("{reply}");
    }
}
