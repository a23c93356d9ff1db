//! Content that only an upstream gateway has, streamed through a server configured with
//! `--gateway`: verified, kept, and never a wrong byte, whatever the upstreams do.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Repo, Server, bytes, server_with_cars};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HAMT: &str = "gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";

/// How a test gateway answers `GET /ipfs/{cid}?format=raw` and `?format=car`.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// What the real upstream sends.
    Honest,
    /// What the real upstream sends for raw blocks; 501 for CARs.
    BlocksOnly,
    /// The upstream's bytes with one changed: the first of a raw block, the last of a CAR (in its
    /// last block).
    Lies,
    /// A 503 for everything.
    Broken,
    /// What the real upstream sends, two seconds late.
    Slow,
}

/// A gateway on loopback in front of a real upstream, answering as told; counts the requests it
/// gets.
struct TestGateway {
    base: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    async fn start(upstream: &str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let (upstream, counted) = (upstream.to_owned(), requests.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, client, counted) = (upstream.clone(), client.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let car = !path.contains("format=raw");
                    let (status, body) = if car && behaviour == Behaviour::BlocksOnly {
                        (501, b"only raw blocks here".to_vec())
                    } else if behaviour == Behaviour::Broken {
                        (503, b"down".to_vec())
                    } else {
                        if behaviour == Behaviour::Slow {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let response = client.get(format!("{upstream}{path}")).send().await.unwrap();
                        let status = response.status().as_u16();
                        let mut body = response.bytes().await.unwrap().to_vec();
                        if behaviour == Behaviour::Lies && status == 200 && !body.is_empty() {
                            let at = if car { body.len() - 1 } else { 0 };
                            body[at] ^= 0xff;
                        }
                        (status, body)
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        if car {
                            "application/vnd.ipld.car"
                        } else {
                            "application/vnd.ipld.raw"
                        },
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        Self { base, requests, task }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds `data` on `repo` (no server running there yet); returns its CID.
fn add(repo: &Repo, name: &str, data: &[u8]) -> String {
    let path = repo.write_file(name, data);
    repo.run_text(&["add", "-q", path.to_str().unwrap()]).trim().to_owned()
}

async fn get(base: &str, path: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line of `/metrics` (`name{labels}` as written), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn content_only_an_upstream_has_streams_verified_and_is_kept() {
    let origin_repo = Repo::new();
    let data = bytes(3 * 1024 * 1024 + 12345, 18);
    let file = add(&origin_repo, "remote.bin", &data);
    let (origin, roots) = server_with_cars(&origin_repo, &[HAMT]);
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--gateway", &origin.base]);

    // A range first: only the blocks it touches are fetched.
    let (status, part) = get(&edge.base, &format!("/ipfs/{file}"), Some("bytes=1000000-1099999")).await;
    assert_eq!(status, 206);
    assert_eq!(part, data[1_000_000..1_100_000]);
    let after_range = sample(&metrics(&edge.base).await, "ipfs_stream_remote_blocks_total");
    assert!(
        (2.0..=6.0).contains(&after_range),
        "the root (with the first 512 KiB, two leaves kept in the background, one of them maybe asked \
         again by the type sniffing before it was kept) and the range's two leaves, not {after_range}"
    );

    let (status, whole) = get(&edge.base, &format!("/ipfs/{file}"), None).await;
    assert_eq!(status, 200);
    assert!(whole == data, "the whole file, byte for byte");
    // The origin serves CARs: the root with the first 512 KiB, the range, and the rest of the file
    // each came as one CAR (and the first 512 bytes, sniffed for the type, as a fourth when asked
    // before the first CAR's leaves were kept); no block was asked alone.
    let text = metrics(&edge.base).await;
    let gateway = format!("{{gateway=\"{}\"}}", origin.base);
    let cars = sample(&text, &format!("ipfs_stream_upstream_car_requests_total{gateway}"));
    assert!((3.0..=4.0).contains(&cars), "{text}");
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_requests_total{gateway}")),
        cars,
        "{text}"
    );
    // A HAMT-sharded directory resolves through the upstream too.
    let (status, listing) = get(&edge.base, &format!("/ipfs/{}/", roots[0]), None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&listing));

    let text = metrics(&edge.base).await;
    let gateway = format!("{{gateway=\"{}\"}}", origin.base);
    assert!(sample(&text, "ipfs_stream_remote_bytes_total") >= data.len() as f64);
    assert!(
        sample(&text, &format!("ipfs_stream_upstream_blocks_total{gateway}")) >= 14.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_bad_blocks_total{gateway}")),
        0.0
    );

    // Kept: with the upstream gone, the file still streams, from the edge's own store.
    drop(origin);
    let fetched = sample(&text, "ipfs_stream_remote_blocks_total");
    for _ in 0..50 {
        let (status, again) = get(&edge.base, &format!("/ipfs/{file}"), None).await;
        if status == 200 && again == data {
            break;
        }
        // Blocks are kept in the background: the last ones may still be on their way.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, again) = get(&edge.base, &format!("/ipfs/{file}"), None).await;
    assert_eq!(status, 200);
    assert!(again == data);
    assert_eq!(
        sample(&metrics(&edge.base).await, "ipfs_stream_remote_blocks_total"),
        fetched
    );
}

#[tokio::test]
async fn a_lying_gateway_never_gets_a_wrong_byte_served() {
    let origin_repo = Repo::new();
    let data = bytes(2 * 1024 * 1024, 19);
    let file = add(&origin_repo, "lied-about.bin", &data);
    let origin = Server::start(&origin_repo);
    let liar = TestGateway::start(&origin.base, Behaviour::Lies).await;

    // Asked first (configured first, no history), caught at its first block, then set aside.
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--gateway", &liar.base, "--gateway", &origin.base]);
    let (status, body) = get(&edge.base, &format!("/ipfs/{file}"), None).await;
    assert_eq!(status, 200);
    assert!(body == data, "only verified bytes");
    let text = metrics(&edge.base).await;
    let liar_label = format!("{{gateway=\"{}\"}}", liar.base);
    assert!(
        sample(&text, &format!("ipfs_stream_upstream_bad_blocks_total{liar_label}")) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_quarantined{liar_label}")),
        1.0
    );
    // Its wrong block was the last of the first CAR asked of it (or of the first two, when the
    // second was asked before the first was read that far); the rest came from the origin.
    assert!(
        liar.requests() <= 3,
        "set aside after its first wrong block: {} requests",
        liar.requests()
    );
    let origin_label = format!("{{gateway=\"{}\"}}", origin.base);
    assert!(
        sample(&text, &format!("ipfs_stream_upstream_car_requests_total{origin_label}")) >= 1.0,
        "{text}"
    );

    // With nobody honest left, the request fails with 502 naming the CID, and no byte of the lie.
    let other = add(&origin_repo, "other.bin", b"short and small");
    let only_liar_repo = Repo::new();
    let only_liar = Server::start_with(&only_liar_repo, &["--gateway", &liar.base]);
    let (status, body) = get(&only_liar.base, &format!("/ipfs/{other}"), None).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("upstream_failed") && text.contains(&other), "{text}");
    assert!(text.contains("do not match"), "{text}");
}

#[tokio::test]
async fn a_cid_nobody_has_is_404_and_one_no_gateway_could_supply_is_502() {
    let origin_repo = Repo::new();
    let origin = Server::start(&origin_repo);
    // A CID of bytes that were never added anywhere.
    let nowhere = add(&Repo::new(), "nowhere.bin", b"nobody keeps this");

    // Both the origin and a gateway in front of it say 404 (to the CAR asked first and the block).
    let honest = TestGateway::start(&origin.base, Behaviour::Honest).await;
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--gateway", &origin.base, "--gateway", &honest.base]);
    let (status, body) = get(&edge.base, &format!("/ipfs/{nowhere}"), None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    let broken = TestGateway::start(&origin.base, Behaviour::Broken).await;
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--gateway", &origin.base, "--gateway", &broken.base]);
    let (status, body) = get(&edge.base, &format!("/ipfs/{nowhere}"), None).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("503"), "{text}");
}

// Several threads: the command runs blocking while the test gateway answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocks_only_gateway_serves_whole_files_and_pins_fetch_the_whole_dag() {
    let origin_repo = Repo::new();
    let data = bytes(1024 * 1024 + 7, 20);
    let file = add(&origin_repo, "pinned.bin", &data);
    let origin = Server::start(&origin_repo);
    let blocks_only = TestGateway::start(&origin.base, Behaviour::BlocksOnly).await;

    // `pin add` of a CID only the upstream has fetches every block and keeps it.
    let local = Repo::new();
    local.run(&["--gateway", &blocks_only.base, "pin", "add", &file]);
    assert!(blocks_only.requests() >= 5, "root and four leaves");
    drop(origin);
    let cat = local.run(&["cat", &file]);
    assert!(cat == data, "the pinned file reads back with no upstream at all");
    assert!(local.run_text(&["pin", "ls"]).contains(&file));
}

#[test]
fn a_gateway_that_is_not_http_is_refused_at_start_naming_it() {
    let repo = Repo::new();
    let output = repo.fail(&["--gateway", "ftp://example.org", "serve", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("gateways") && stderr.contains("ftp://example.org"),
        "{stderr}"
    );
}

#[tokio::test]
async fn kept_remote_blocks_stay_within_the_cache_budget_and_pinned_ones_are_never_evicted() {
    let origin_repo = Repo::new();
    let pinned_data = bytes(512 * 1024, 21);
    let cached_data = bytes(3 * 1024 * 1024, 22);
    let pinned = add(&origin_repo, "pinned.bin", &pinned_data);
    let cached = add(&origin_repo, "cached.bin", &cached_data);
    let origin = Server::start(&origin_repo);

    let edge_repo = Repo::new();
    let budget = 1024 * 1024;
    let edge = Server::start_with(
        &edge_repo,
        &["--gateway", &origin.base, "--cache-max-bytes", &budget.to_string()],
    );
    let client = reqwest::Client::new();
    let pin = client
        .post(format!("{}/api/v0/pin/add?arg={pinned}", edge.base))
        .send()
        .await
        .unwrap();
    assert!(pin.status().is_success(), "{}", pin.text().await.unwrap());
    let (status, body) = get(&edge.base, &format!("/ipfs/{cached}"), None).await;
    assert_eq!(status, 200);
    assert!(body == cached_data);

    // Three times the budget went through: the eviction brings it back under.
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics(&edge.base).await;
        // Blocks are kept and evicted in the background, a few at a time: wait for the end state.
        if sample(&text, "ipfs_stream_remote_cache_evicted_total") >= 8.0
            && sample(&text, "ipfs_stream_remote_cache_bytes") <= budget as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sample(&text, "ipfs_stream_remote_cache_evicted_total") >= 8.0, "{text}");
    assert!(
        sample(&text, "ipfs_stream_remote_cache_bytes") <= budget as f64,
        "{text}"
    );
    assert_eq!(sample(&text, "ipfs_stream_remote_cache_max_bytes"), budget as f64);

    // The pinned file is all there with the origin gone; the evicted one is not.
    drop(origin);
    let (status, body) = get(&edge.base, &format!("/ipfs/{pinned}"), None).await;
    assert_eq!(status, 200);
    assert!(body == pinned_data);
    let (status, _) = get(&edge.base, &format!("/ipfs/{cached}"), None).await;
    assert_eq!(
        status, 502,
        "evicted blocks are asked of the upstream again, which is gone"
    );
}

#[tokio::test]
async fn a_slow_gateway_is_hedged_and_sse_and_websocket_stream_remote_content_too() {
    use base64::Engine;
    let origin_repo = Repo::new();
    // A raw block (CIDv1, one chunk): asked with ?format=raw, which is hedged.
    let small_path = origin_repo.write_file("small.txt", b"a block of its own");
    let small = origin_repo
        .run_text(&["add", "-q", "--cid-version", "1", small_path.to_str().unwrap()])
        .trim()
        .to_owned();
    let data = bytes(600_000, 24);
    let file = add(&origin_repo, "sse.bin", &data);
    let origin = Server::start(&origin_repo);
    let slow = TestGateway::start(&origin.base, Behaviour::Slow).await;

    // The slow one is configured first and unmeasured, so asked first; after 500 ms the origin
    // is asked as well, and answers first.
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--gateway", &slow.base, "--gateway", &origin.base]);
    let (status, body) = get(&edge.base, &format!("/ipfs/{small}"), None).await;
    assert_eq!((status, body.as_slice()), (200, b"a block of its own".as_slice()));
    let text = metrics(&edge.base).await;
    let origin_label = format!("{{gateway=\"{}\"}}", origin.base);
    let slow_label = format!("{{gateway=\"{}\"}}", slow.base);
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_hedges_total{origin_label}")),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_blocks_total{origin_label}")),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_blocks_total{slow_label}")),
        0.0,
        "the hedge won"
    );

    // Server-Sent Events of a file only the upstream has.
    let response = reqwest::get(format!("{}/sse/stream/{file}?chunk_size=65536", edge.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let streamed: Vec<u8> = text
        .split("\n\n")
        .filter(|event| event.lines().any(|line| line == "event: chunk"))
        .flat_map(|event| {
            let data = event.lines().find_map(|line| line.strip_prefix("data: ")).unwrap();
            base64::engine::general_purpose::STANDARD.decode(data).unwrap()
        })
        .collect();
    assert!(streamed == data, "the SSE stream carries the remote file, verified");

    // A WebSocket download of another file only the upstream has: binary chunks, then `complete`.
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let other = bytes(700_000, 26);
    let other_cid = add(&origin_repo, "ws.bin", &other);
    let url = format!(
        "{}/ws/stream/{other_cid}?chunk_size=100000",
        edge.base.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut received = Vec::new();
    let mut texts = Vec::new();
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Binary(chunk) => received.extend_from_slice(&chunk),
            Message::Text(text) => {
                let done = text.contains("\"complete\"") || text.contains("\"error\"");
                texts.push(text.to_string());
                if done {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(texts.last().is_some_and(|t| t.contains("\"complete\"")), "{texts:?}");
    assert!(
        received == other,
        "the WebSocket download carries the remote file, verified"
    );
}

#[tokio::test]
async fn a_gateway_configured_blocks_only_is_never_asked_for_a_car() {
    let origin_repo = Repo::new();
    let data = bytes(1024 * 1024, 25);
    let file = add(&origin_repo, "blocks.bin", &data);
    let origin = Server::start(&origin_repo);
    let edge_repo = Repo::new();
    let edge = Server::start_with(&edge_repo, &["--blocks-only-gateway", &origin.base]);
    let (status, body) = get(&edge.base, &format!("/ipfs/{file}"), None).await;
    assert_eq!(status, 200);
    assert!(body == data);
    let text = metrics(&edge.base).await;
    let label = format!("{{gateway=\"{}\"}}", origin.base);
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_car_requests_total{label}")),
        0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("ipfs_stream_upstream_blocks_total{label}")),
        5.0,
        "a root and four leaves"
    );
}

/// A `serve` on a port of the test's choosing, so that two servers can name each other.
fn serve_on(repo: &Repo, port: u16, options: &[&str]) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--auth",
        "off",
        "--anon-rate-limit-per-second",
        "0",
        "--session-rate-limit-per-minute",
        "0",
    ];
    args.extend_from_slice(options);
    Server::spawn(repo.command(&args))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_list_each_other_answer_what_they_store_and_never_ask_round() {
    let (repo_a, repo_b) = (Repo::new(), Repo::new());
    let data = common::bytes(700_000, 21);
    let on_a = add(&repo_a, "a.bin", &data);
    let on_b = add(&repo_b, "b.bin", b"only B keeps this");
    let nowhere = add(&Repo::new(), "nowhere.bin", b"nobody keeps this");
    let (port_a, port_b) = (free_port(), free_port());
    let (peer_a, peer_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let a = serve_on(&repo_a, port_a, &["--peer", &peer_b]);
    let b = serve_on(&repo_b, port_b, &["--peer", &peer_a]);

    // Each streams what the other stores, verified.
    assert_eq!(get(&b.base, &format!("/ipfs/{on_a}"), None).await, (200, data.clone()));
    let (status, part) = get(&b.base, &format!("/ipfs/{on_a}"), Some("bytes=500000-500099")).await;
    assert_eq!((status, part), (206, data[500_000..500_100].to_vec()));
    assert_eq!(
        get(&a.base, &format!("/ipfs/{on_b}"), None).await.1,
        b"only B keeps this"
    );

    // A CID neither has is 404 at once: asked as a peer, each answers from its store alone
    // (going round the ring would end in 502 after the 30 s remote timeout).
    let (status, body) = get(&a.base, &format!("/ipfs/{nowhere}"), None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    // Asked for what it stores only, B answers 504 for what only its upstream (A) has, and does
    // not fetch it.
    let fresh = add(&repo_a, "fresh.bin", b"added on A after B started");
    let fetched_before = sample(&metrics(&b.base).await, "ipfs_stream_remote_blocks_total");
    let response = reqwest::Client::new()
        .get(format!("{}/ipfs/{fresh}?format=raw", b.base))
        .header("Cache-Control", "max-age=0, only-if-cached")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "not_stored");
    assert_eq!(
        sample(&metrics(&b.base).await, "ipfs_stream_remote_blocks_total"),
        fetched_before
    );
    assert_eq!(get(&b.base, &format!("/ipfs/{fresh}?format=raw"), None).await.0, 200);
}
