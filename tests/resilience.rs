//! The server under conditions it does not choose: a store that runs out of space.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BINARY, Repo, Server, bytes};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A server whose data dir is a tmpfs of `megabytes`, mounted in a mount namespace of the
/// server's own (so nothing is left mounted when it ends, whatever happens to the test).
fn server_on_small_disk(repo: &Repo, megabytes: u32) -> (Server, PathBuf) {
    let data_dir = repo.path().join("small-disk");
    std::fs::create_dir(&data_dir).unwrap();
    // Root may mount in a new mount namespace; anyone else needs a user namespace as well.
    let namespaces = if unsafe { libc::geteuid() } == 0 { "-m" } else { "-Urm" };
    let mut command = Command::new("unshare");
    command
        .args([namespaces, "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={megabytes}m tmpfs \"$0\" && exec \"$1\" serve --listen 127.0.0.1:0 \
             --auth off --data-dir \"$0\""
        ))
        .arg(&data_dir)
        .arg(BINARY)
        .env_remove("IPFS_STREAM_KUBO_API");
    (Server::spawn(command), data_dir)
}

/// `path` as the server sees it: its tmpfs is mounted in its namespace, not in ours.
fn seen_by(server: &Server, path: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root", server.child.id())).join(path.strip_prefix("/").unwrap())
}

async fn post(client: &reqwest::Client, server: &Server, data: Vec<u8>) -> (u16, Value) {
    let response = client
        .post(format!("{}/api/v1/content", server.base))
        .body(data)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_full_disk_fails_the_upload_with_507_leaves_nothing_and_reads_go_on() {
    let repo = Repo::new();
    let (server, data_dir) = server_on_small_disk(&repo, 16);
    let client = reqwest::Client::new();

    let first = bytes(1 << 20, 1);
    let (status, added) = post(&client, &server, first.clone()).await;
    assert_eq!(status, 201, "{added}");
    let first_cid = added["cid"].as_str().unwrap().to_owned();

    // Twice the disk: the store fills up part way through.
    let (status, refused) = post(&client, &server, bytes(32 << 20, 2)).await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(refused["error"], "storage_full", "{refused}");

    // Over WebSocket the same failure is an error message naming it.
    let url = format!("{}/ws/upload", server.base.replacen("http://", "ws://", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let metadata = json!({"type": "metadata", "filename": "big.bin"});
    socket.send(Message::Text(metadata.to_string().into())).await.unwrap();
    let big = bytes(32 << 20, 3);
    let mut error = None;
    for piece in big.chunks(1 << 20) {
        if socket.send(Message::Binary(piece.to_vec().into())).await.is_err() {
            break;
        }
    }
    let _ = socket
        .send(Message::Text(json!({"type": "complete"}).to_string().into()))
        .await;
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "error" || message.get("error").is_some() {
                error = Some(message);
                break;
            }
            assert_ne!(message["type"], "result", "{message}");
        }
    }
    let error = error.expect("an error message");
    assert_eq!(error["error"], "storage_full", "{error}");
    drop(socket);

    // Nothing of either upload is left: no record, no staged block, and the space is back.
    let listing: Value = client
        .get(format!("{}/api/v1/content", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["total"], 1, "{listing}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let staging = seen_by(&server, &data_dir.join("staging"));
    while std::fs::read_dir(&staging).unwrap().next().is_some() {
        assert!(std::time::Instant::now() < deadline, "staging was not cleared");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Reads go on, and so do uploads that fit.
    let read = client
        .get(format!("{}/ipfs/{first_cid}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap().as_ref(), first.as_slice());
    let (status, added) = post(&client, &server, bytes(1 << 20, 4)).await;
    assert_eq!(status, 201, "{added}");
}

fn block_files(repo: &Repo) -> std::collections::BTreeSet<PathBuf> {
    walk(&repo.path().join("blocks"))
}

fn walk(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut files = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.insert(path);
        }
    }
    files
}

#[tokio::test]
async fn a_block_the_disk_cannot_read_fails_that_request_only() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let client = reqwest::Client::new();
    let healthy = bytes(100_000, 5);
    let (_, added) = post(&client, &server, healthy.clone()).await;
    let healthy_cid = added["cid"].as_str().unwrap().to_owned();
    let before = block_files(&repo);
    let (_, added) = post(&client, &server, bytes(100_000, 6)).await;
    let broken_cid = added["cid"].as_str().unwrap().to_owned();
    let broken: Vec<_> = block_files(&repo).difference(&before).cloned().collect();
    assert_eq!(broken.len(), 1, "one block for a file under one chunk");
    // A block file the filesystem refuses to read (here: a directory in its place, EISDIR).
    std::fs::remove_file(&broken[0]).unwrap();
    std::fs::create_dir(&broken[0]).unwrap();

    for _ in 0..2 {
        let failed = client
            .get(format!("{}/ipfs/{broken_cid}", server.base))
            .send()
            .await
            .unwrap();
        assert!(failed.status().is_server_error(), "{}", failed.status());
        let read = client
            .get(format!("{}/ipfs/{healthy_cid}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(read.bytes().await.unwrap().as_ref(), healthy.as_slice());
    }
}

/// A connection to `server` from `source` (any 127.0.0.0/8 address is this host's).
async fn connect_from(server: &Server, source: [u8; 4]) -> tokio::net::TcpStream {
    let address: std::net::SocketAddr = server.base.strip_prefix("http://").unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
    socket.connect(address).await.unwrap()
}

/// Everything the server sends until it closes the connection (or 10 s pass: then `None`).
async fn until_closed(connection: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// One keep-alive request on `connection`; returns the status line.
async fn request_on(connection: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 65536];
    let n = connection.read(&mut buffer).await.unwrap();
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn metric(server: &Server, line_start: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

#[tokio::test]
async fn an_address_over_its_connection_cap_is_closed_on_arrival_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--max-connections-per-ip", "4", "--keep-alive-secs", "60"]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut connection = connect_from(&server, [127, 0, 0, 2]).await;
        assert!(request_on(&mut connection, "/health").await.contains("200"));
        held.push(connection);
    }
    let mut fifth = connect_from(&server, [127, 0, 0, 2]).await;
    let _ = fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let answer = until_closed(&mut fifth).await.expect("closed at once");
    assert!(answer.is_empty(), "closed before its request is read: {answer}");

    // Another address is served, and the held ones still are.
    let mut other = connect_from(&server, [127, 0, 0, 3]).await;
    assert!(request_on(&mut other, "/health").await.contains("200"));
    assert!(request_on(&mut held[0], "/health").await.contains("200"));
    assert_eq!(
        metric(
            &server,
            "ipfs_stream_http_connections_refused_total{cap=\"per_address\"}"
        )
        .await,
        1.0
    );
    assert!(metric(&server, "ipfs_stream_http_connections_open").await >= 5.0);

    // Closing one gives its slot back.
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut again = connect_from(&server, [127, 0, 0, 2]).await;
        let _ = again
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await;
        let mut buffer = [0u8; 64];
        use tokio::io::AsyncReadExt;
        if let Ok(n) = again.read(&mut buffer).await
            && String::from_utf8_lossy(&buffer[..n]).contains("200")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed connection's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slow_heads_and_stalled_bodies_are_cut_off_and_huge_heads_refused() {
    use tokio::io::AsyncWriteExt;
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--header-timeout-ms", "500", "--body-idle-timeout-secs", "1"]);
    // A head that never ends.
    let mut slow = connect_from(&server, [127, 0, 0, 1]).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").await.unwrap();
    let answer = until_closed(&mut slow).await.expect("a slow head is cut off");
    assert!(answer.is_empty() || answer.contains("408"), "{answer}");

    // A body that stops half way: 408 naming it, and nothing stored.
    let mut stalled = connect_from(&server, [127, 0, 0, 1]).await;
    stalled
        .write_all(b"POST /api/v1/content HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    stalled.write_all(&[1u8; 1000]).await.unwrap();
    let answer = until_closed(&mut stalled).await.expect("a stalled body is cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("input_stalled"), "{answer}");
    let listing: Value = reqwest::get(format!("{}/api/v1/content", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["total"], 0);

    // A multipart body that stops between parts: the same.
    let mut between = connect_from(&server, [127, 0, 0, 1]).await;
    between
        .write_all(
            b"POST /api/v1/content HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=X\r\n\
              Content-Length: 1000\r\n\r\n--X\r\n",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut between)
        .await
        .expect("a multipart body that stalls is cut off");
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("input_stalled"),
        "{answer}"
    );

    // On /ws/bidirectional, an open upload that gets nothing fails as stalled; the socket stays.
    let url = format!("{}/ws/bidirectional", server.base.replacen("http://", "ws://", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let add = json!({"command": "add", "filename": "slow.bin"});
    socket.send(Message::Text(add.to_string().into())).await.unwrap();
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => replies.push(serde_json::from_str::<Value>(&text).unwrap()),
            Ok(Some(Ok(_))) => {}
            other => panic!("{replies:?} then {other:?}"),
        }
    }
    assert_eq!(replies[0]["type"], "ready", "{replies:?}");
    assert_eq!(replies[1]["type"], "result", "{replies:?}");
    assert_eq!(replies[1]["error"], "input_stalled", "{replies:?}");
    socket
        .send(Message::Text(json!({"command": "ping"}).to_string().into()))
        .await
        .unwrap();
    let pong = loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(pong["type"], "pong");

    // The same over a WebSocket upload: an error naming it, then a close.
    let url = format!("{}/ws/upload", server.base.replacen("http://", "ws://", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let metadata = json!({"type": "metadata", "filename": "slow.bin"});
    socket.send(Message::Text(metadata.to_string().into())).await.unwrap();
    socket.send(Message::Binary(vec![1u8; 1000].into())).await.unwrap();
    let error = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "error" {
                    break message;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no error before {other:?}"),
        }
    };
    assert_eq!(error["error"], "input_stalled", "{error}");

    // A head larger than the server reads.
    let mut huge = connect_from(&server, [127, 0, 0, 1]).await;
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 << 10)
    );
    let _ = huge.write_all(head.as_bytes()).await;
    let answer = until_closed(&mut huge).await.expect("a huge head is refused");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");

    let health = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}
