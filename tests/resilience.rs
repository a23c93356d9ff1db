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
