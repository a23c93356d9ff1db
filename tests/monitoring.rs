//! The server watching itself, end to end: sampled history, active content, analytics, fault
//! injection and an anomaly raised by it.

mod common;

use std::time::{Duration, Instant};

use common::{Repo, Server, bytes};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn scrape(server: &Server) -> String {
    let response = client().get(format!("{}/metrics", server.base)).send().await.unwrap();
    response.text().await.unwrap()
}

/// The value of an unlabelled sample in Prometheus text.
fn counter(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    let line = metrics.lines().find_map(|l| l.strip_prefix(&prefix));
    line.unwrap_or_else(|| panic!("{name} missing")).parse().unwrap()
}

async fn add(server: &Server, data: Vec<u8>) -> String {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(data).file_name("f"));
    let response = client()
        .post(format!("{}/api/v1/content", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["cid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_reach_the_history_and_an_open_stream_is_listed_as_active() {
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--sample-interval-ms", "100"]);
    let cid = add(&server, bytes(48 << 20, 7)).await;
    // A download whose body is not read stays open: the server is blocked on the socket.
    let open = client()
        .get(format!("{}/ipfs/{cid}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let active = loop {
        let (_, body) = get_json(&format!("{}/api/v1/content/active", server.base)).await;
        if body["viewers"] == 1 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(active["active"][0]["cid"], cid.as_str(), "{active}");
    assert_eq!(active["active"][0]["stream_type"], "http");
    assert!(active["active"][0]["bitrate"].as_f64().unwrap() > 0.0);
    drop(open);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_json(&format!(
            "{}/api/v1/metrics/history?metric=throughput_out_bytes_per_second&step=1",
            server.base
        ))
        .await;
        assert_eq!(status, 200);
        let points = body["points"].as_array().unwrap();
        if points.iter().any(|p| p["max"].as_f64().unwrap() > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no throughput sampled: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, rss) = get_json(&format!("{}/api/v1/metrics/history?metric=rss_bytes", server.base)).await;
    assert!(rss["points"][0]["value"].as_f64().unwrap() > 1e6, "{rss}");
    let (_, series) = get_json(&format!("{}/api/v1/metrics/series", server.base)).await;
    assert!(
        series
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "latency_p95_seconds")
    );
    let (status, _) = get_json(&format!("{}/api/v1/faults", server.base)).await;
    assert_eq!(status, 403, "fault injection is off by default");
    let metrics = client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> f64 {
        let prefix = format!("{name} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(counter("ipfs_stream_store_blocks_read_total") > 0.0, "{metrics}");
    assert!(counter("ipfs_stream_store_read_bytes_total") > 0.0);
    assert_eq!(counter("ipfs_stream_store_verify_failures_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_store_latency_is_detected_stored_and_pushed() {
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--sample-interval-ms", "100", "--allow-fault-injection"]);
    let cid = add(&server, bytes(64 << 10, 3)).await;
    let url = format!("{}/ws/notifications", server.base.replacen("http://", "ws://", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    socket
        .send(Message::text(
            json!({"action": "subscribe", "notification_types": ["system_warning", "system_metrics"]}).to_string(),
        ))
        .await
        .unwrap();
    // Steady traffic while the detector learns (its first 60 latency samples), then a latency fault.
    let traffic = {
        let (base, cid) = (server.base.clone(), cid.clone());
        tokio::spawn(async move {
            let client = client();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                if let Ok(response) = client.get(format!("{base}/ipfs/{cid}")).send().await {
                    let _ = response.bytes().await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(9)).await;
    // The fault. Noise on a loaded machine may raise smaller latency alerts before it; the fault
    // lies far beyond them, so it alerts all the same.
    let response = client()
        .post(format!("{}/api/v1/faults", server.base))
        .json(&json!({"store_latency_ms": 1500, "duration_s": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let mut metrics_seen = 0;
    let mut warning = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Ok(message) = tokio::time::timeout_at(deadline.into(), socket.next()).await {
        let Message::Text(text) = message.unwrap().unwrap() else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        match message["notification_type"].as_str() {
            Some("system_metrics") => metrics_seen += 1,
            // The detector may flag other changes of pattern first; the fault is the slow one.
            Some("system_warning")
                if message["data"]["metric"] == "latency_p95_seconds"
                    && message["data"]["value"].as_f64().unwrap() >= 1.0 =>
            {
                warning = Some(message);
                break;
            }
            _ => {}
        }
    }
    let warning = warning.expect("a system_warning for the injected latency");
    traffic.abort();
    assert!(metrics_seen > 0);
    let data = &warning["data"];
    assert!(data["value"].as_f64().unwrap() >= 1.0, "{data}");
    assert!(data["expected_range"][1].as_f64().unwrap() < 1.0, "{data}");
    assert_eq!(data["detector"], "contextual");
    let (_, analytics) = get_json(&format!("{}/api/v1/analytics", server.base)).await;
    let anomalies = analytics["anomalies"].as_array().unwrap();
    assert!(
        anomalies.iter().any(|a| a["metric"] == "latency_p95_seconds"),
        "{analytics}"
    );
    let metrics = scrape(&server).await;
    assert!(counter(&metrics, "ipfs_stream_anomalies_raised_total") >= 1.0);
}
