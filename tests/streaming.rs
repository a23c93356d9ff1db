//! WebSocket and Server-Sent Events streaming, end to end over real sockets.

mod common;

use common::{Repo, Server, bytes};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, path: &str) -> Socket {
    let url = format!("{}{path}", server.base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match socket.next().await.expect("a message").unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected JSON, got {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code.
async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    while let Some(message) = socket.next().await {
        if let Ok(Message::Close(frame)) = message {
            return frame.map(|f| f.code);
        }
    }
    None
}

fn add(repo: &Repo, data: &[u8], options: &[&str]) -> String {
    let file = repo.write_file("input.bin", data);
    let mut args = vec!["add", "-q"];
    args.extend_from_slice(options);
    args.push(file.to_str().unwrap());
    repo.run_text(&args).trim().to_owned()
}

#[tokio::test]
async fn a_websocket_download_sends_metadata_chunks_and_complete() {
    let repo = Repo::new();
    let data = bytes(1_000_000, 11);
    let cid = add(&repo, &data, &[]);
    let server = Server::start(&repo);

    let mut socket = connect(&server, &format!("/ws/stream/{cid}?chunk_size=100000")).await;
    let metadata = next_json(&mut socket).await;
    assert_eq!(metadata["type"], "metadata");
    assert_eq!(metadata["cid"], cid.as_str());
    assert_eq!(metadata["size"], 1_000_000);
    assert_eq!(metadata["chunk_size"], 100_000);
    let mut received = Vec::new();
    let complete = loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Binary(chunk) => {
                assert!(chunk.len() <= 100_000);
                received.extend_from_slice(&chunk);
            }
            Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(received == data);
    assert_eq!(complete["type"], "complete");
    assert_eq!(complete["bytes_sent"], 1_000_000);
    assert_eq!(complete["chunks"], 10);
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Normal));

    // A part, to resume.
    let mut socket = connect(&server, &format!("/ws/stream/{cid}?offset=999000&length=500")).await;
    assert_eq!(next_json(&mut socket).await["length"], 500);
    let Message::Binary(part) = socket.next().await.unwrap().unwrap() else {
        panic!("a binary chunk")
    };
    assert_eq!(&part[..], &data[999_000..999_500]);
}

#[tokio::test]
async fn websocket_download_errors_name_the_problem_then_close() {
    let repo = Repo::new();
    let cid = add(&repo, b"hello world\n", &[]);
    let server = Server::start(&repo);
    let cases = [
        ("/ws/stream/not-a-cid".to_owned(), "invalid_cid", CloseCode::Policy),
        (
            "/ws/stream/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".to_owned(),
            "not_found",
            CloseCode::Policy,
        ),
        (
            format!("/ws/stream/{cid}?chunk_size=12"),
            "invalid_parameter",
            CloseCode::Policy,
        ),
        (
            format!("/ws/stream/{cid}?offset=99"),
            "range_not_satisfiable",
            CloseCode::Policy,
        ),
    ];
    for (path, code, close) in cases {
        let mut socket = connect(&server, &path).await;
        let error = next_json(&mut socket).await;
        assert_eq!(
            (error["type"].as_str(), error["error"].as_str()),
            (Some("error"), Some(code)),
            "{path}: {error}"
        );
        assert!(!error["message"].as_str().unwrap().is_empty());
        assert_eq!(close_code(&mut socket).await, Some(close), "{path}");
    }
}

#[tokio::test]
async fn a_websocket_upload_gives_the_cid_of_the_rest_api() {
    let repo = Repo::new();
    let data = bytes(900_000, 12);
    let expected = add(&repo, &data, &["--cid-version", "1", "--chunker", "size-65536"]);
    let server = Server::start(&repo);

    let mut socket = connect(&server, "/ws/upload").await;
    // Errors before the metadata are reported and the socket stays usable.
    socket.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "invalid_json");
    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "expected_metadata");
    socket
        .send(Message::Text(json!({"type": "chunk"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "expected_metadata");

    let metadata =
        json!({"type": "metadata", "filename": "data.bin", "size": 900_000, "cid_version": 1, "chunker": "size-65536"});
    socket.send(Message::Text(metadata.to_string().into())).await.unwrap();
    for piece in data.chunks(100_000) {
        socket.send(Message::Binary(piece.to_vec().into())).await.unwrap();
    }
    socket
        .send(Message::Text(json!({"type": "complete"}).to_string().into()))
        .await
        .unwrap();
    let result = loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "progress" {
            break message;
        }
        assert!(message["bytes_received"].as_u64().unwrap() <= 900_000);
    };
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["success"], true);
    assert_eq!(result["cid"], expected.as_str());
    assert_eq!(result["size"], 900_000);
}

#[tokio::test]
async fn an_upload_cut_off_before_complete_leaves_nothing() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let mut socket = connect(&server, "/ws/upload").await;
    socket
        .send(Message::Text(
            json!({"type": "metadata", "filename": "x.bin"}).to_string().into(),
        ))
        .await
        .unwrap();
    socket.send(Message::Binary(bytes(600_000, 1).into())).await.unwrap();
    socket.close(None).await.unwrap();
    drop(socket);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(repo.path().join("staging")).unwrap().next().is_some() {
        assert!(std::time::Instant::now() < deadline, "staging was not cleared");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_dir(repo.path().join("blocks")).unwrap().next().is_none());
}

#[tokio::test]
async fn uploads_over_the_limit_close_with_1009_and_store_nothing() {
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--max-upload-bytes", "100000"]);
    let mut socket = connect(&server, "/ws/upload").await;
    socket
        .send(Message::Text(
            json!({"type": "metadata", "filename": "big.bin"}).to_string().into(),
        ))
        .await
        .unwrap();
    for _ in 0..3 {
        if socket.send(Message::Binary(vec![7u8; 60_000].into())).await.is_err() {
            break;
        }
    }
    let error = next_json(&mut socket).await;
    assert_eq!(error["error"], "too_large", "{error}");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
    assert!(std::fs::read_dir(repo.path().join("blocks")).unwrap().next().is_none());
}

#[tokio::test]
async fn sse_streams_base64_chunks_and_resumes_from_last_event_id() {
    use base64::Engine;
    let repo = Repo::new();
    let data = bytes(200_000, 13);
    let cid = add(&repo, &data, &[]);
    let server = Server::start(&repo);
    let client = reqwest::Client::new();

    let parse = |text: &str| -> Vec<(String, u64, String)> {
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let field = |name: &str| e.lines().find_map(|l| l.strip_prefix(name)).unwrap().to_owned();
                (field("event: "), field("id: ").parse().unwrap(), field("data: "))
            })
            .collect()
    };
    let response = client
        .get(format!("{}/sse/stream/{cid}?chunk_size=65536", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = parse(&response.text().await.unwrap());
    assert_eq!(events[0].0, "metadata");
    let decode = |events: &[(String, u64, String)]| -> Vec<u8> {
        events
            .iter()
            .filter(|e| e.0 == "chunk")
            .flat_map(|e| base64::engine::general_purpose::STANDARD.decode(&e.2).unwrap())
            .collect()
    };
    assert!(decode(&events) == data);
    let chunks: Vec<u64> = events.iter().filter(|e| e.0 == "chunk").map(|e| e.1).collect();
    assert_eq!(chunks, vec![65_536, 131_072, 196_608, 200_000], "ids are byte offsets");
    let complete = events.last().unwrap();
    assert_eq!((complete.0.as_str(), complete.1), ("complete", 200_000));

    // Resume after the second chunk.
    let resumed = client
        .get(format!("{}/sse/stream/{cid}?chunk_size=65536", server.base))
        .header("last-event-id", "131072")
        .send()
        .await
        .unwrap();
    let events = parse(&resumed.text().await.unwrap());
    assert!(decode(&events) == data[131_072..]);

    let bad = client
        .get(format!("{}/sse/stream/{cid}", server.base))
        .header("last-event-id", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_stalled_reader_does_not_hold_up_another() {
    let repo = Repo::new();
    let data = bytes(8_000_000, 14);
    let cid = add(&repo, &data, &[]);
    let server = Server::start(&repo);

    // This reader takes the metadata and then reads nothing more.
    let mut stalled = connect(&server, &format!("/ws/stream/{cid}?chunk_size=65536")).await;
    assert_eq!(next_json(&mut stalled).await["type"], "metadata");

    let mut reader = connect(&server, &format!("/ws/stream/{cid}")).await;
    assert_eq!(next_json(&mut reader).await["type"], "metadata");
    let mut received = 0usize;
    let complete = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match reader.next().await.unwrap().unwrap() {
                Message::Binary(chunk) => received += chunk.len(),
                Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
                _ => {}
            }
        }
    })
    .await
    .expect("the second reader finished while the first stalled");
    assert_eq!(complete["type"], "complete");
    assert_eq!(received, data.len());
    drop(stalled);
}

/// The frames of a WebSocket response as they come off the wire (the client libraries join
/// fragments): (FIN bit, opcode, payload length), until the close frame.
async fn raw_frames(server: &Server, path: &str) -> Vec<(bool, u8, usize)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = server.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tcp.read_to_end(&mut bytes).await.unwrap();
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    let mut at = head;
    let mut frames = Vec::new();
    while at < bytes.len() {
        let (fin, opcode) = (bytes[at] & 0x80 != 0, bytes[at] & 0x0f);
        let (length, header) = match bytes[at + 1] & 0x7f {
            126 => (
                u16::from_be_bytes(bytes[at + 2..at + 4].try_into().unwrap()) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((fin, opcode, length));
        at += header + length;
        if opcode == 8 {
            break;
        }
    }
    frames
}

#[tokio::test]
async fn a_chunk_over_32_kib_goes_out_as_fragments_of_32_kib() {
    let repo = Repo::new();
    let data = bytes(300_000, 15);
    let cid = add(&repo, &data, &[]);
    let server = Server::start(&repo);
    let frames = raw_frames(&server, &format!("/ws/stream/{cid}?chunk_size=262144")).await;
    let (text, binary, continuation, close) = (1, 2, 0, 8);
    let mut expected = vec![(true, text, frames[0].2)]; // the metadata
    // 256 KiB in eight fragments, then the last 37 856 bytes in two.
    expected.push((false, binary, 32_768));
    expected.extend([(false, continuation, 32_768); 6]);
    expected.push((true, continuation, 32_768));
    expected.push((false, binary, 32_768));
    expected.push((true, continuation, 300_000 - 262_144 - 32_768));
    expected.push((true, text, frames[frames.len() - 2].2)); // complete
    expected.push((true, close, 2));
    assert_eq!(frames, expected);
}

/// Splits a bidirectional binary frame into its transfer id and payload.
fn transfer(frame: &[u8]) -> (u32, &[u8]) {
    (u32::from_be_bytes(frame[..4].try_into().unwrap()), &frame[4..])
}

#[tokio::test]
async fn the_bidirectional_socket_interleaves_transfers() {
    let repo = Repo::new();
    let first = bytes(700_000, 21);
    let second = bytes(500_000, 22);
    let first_cid = add(&repo, &first, &[]);
    let expected_upload = add(&repo, &bytes(300_000, 23), &["--cid-version", "1"]);
    let second_cid = add(&repo, &second, &[]);
    let server = Server::start(&repo);
    let mut socket = connect(&server, "/ws/bidirectional").await;

    let send = |value: Value| Message::Text(value.to_string().into());
    socket
        .send(send(json!({"command": "ping", "request_id": 7})))
        .await
        .unwrap();
    let pong = next_json(&mut socket).await;
    assert_eq!(
        (pong["type"].as_str(), pong["request_id"].as_i64()),
        (Some("pong"), Some(7))
    );

    // Two downloads at once, and an upload while they run.
    socket
        .send(send(json!({"command": "get", "cid": first_cid, "request_id": "a"})))
        .await
        .unwrap();
    socket
        .send(send(json!({"command": "get", "cid": second_cid, "request_id": "b"})))
        .await
        .unwrap();
    socket
        .send(send(
            json!({"command": "add", "filename": "up.bin", "cid_version": 1, "request_id": "c"}),
        ))
        .await
        .unwrap();

    let mut ids = std::collections::HashMap::new(); // transfer id -> request id
    let mut received: std::collections::HashMap<u32, Vec<u8>> = Default::default();
    let mut completes = 0;
    let mut upload_id = None;
    let mut result = None;
    while completes < 2 || result.is_none() {
        match socket.next().await.unwrap().unwrap() {
            Message::Binary(frame) => {
                let (id, payload) = transfer(&frame);
                assert!(ids.contains_key(&id), "a frame of a transfer announced before");
                received.entry(id).or_default().extend_from_slice(payload);
            }
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                let id = message["transfer_id"].as_u64().map(|id| id as u32);
                match message["type"].as_str().unwrap() {
                    "metadata" => {
                        ids.insert(id.unwrap(), message["request_id"].as_str().unwrap().to_owned());
                    }
                    "complete" => completes += 1,
                    "ready" => {
                        let id = id.unwrap();
                        ids.insert(id, "c".into());
                        upload_id = Some(id);
                        for piece in bytes(300_000, 23).chunks(64 * 1024) {
                            let mut frame = id.to_be_bytes().to_vec();
                            frame.extend_from_slice(piece);
                            socket.send(Message::Binary(frame.into())).await.unwrap();
                        }
                        socket
                            .send(send(json!({"command": "complete", "transfer_id": id})))
                            .await
                            .unwrap();
                    }
                    "result" => result = Some(message),
                    other => panic!("unexpected {other}: {message}"),
                }
            }
            _ => {}
        }
    }
    for (id, request) in &ids {
        match request.as_str() {
            "a" => assert!(received[id] == first),
            "b" => assert!(received[id] == second),
            _ => {}
        }
    }
    let result = result.unwrap();
    assert_eq!(result["transfer_id"].as_u64().map(|i| i as u32), upload_id);
    assert_eq!(
        (result["success"].as_bool(), result["cid"].as_str()),
        (Some(true), Some(expected_upload.as_str()))
    );
    assert_eq!(result["request_id"], "c");

    socket
        .send(send(json!({"command": "pin", "cid": first_cid})))
        .await
        .unwrap();
    let pinned = next_json(&mut socket).await;
    assert_eq!(
        (pinned["type"].as_str(), pinned["success"].as_bool()),
        (Some("pin_result"), Some(true))
    );

    // Errors name the problem and the socket stays usable.
    for (message, code) in [
        (Message::Text("nope".into()), "invalid_json"),
        (send(json!({"command": "dance"})), "unknown_command"),
        (send(json!({"cid": first_cid})), "missing_command"),
        (
            send(json!({"command": "complete", "transfer_id": 999})),
            "unknown_transfer",
        ),
        (Message::Binary(vec![0, 0, 3, 231, 1].into()), "unknown_transfer"),
        (send(json!({"command": "get", "cid": "not-a-cid"})), "invalid_cid"),
    ] {
        socket.send(message).await.unwrap();
        let reply = next_json(&mut socket).await;
        assert_eq!(reply["error"], code, "{reply}");
    }
    socket.send(send(json!({"command": "close"}))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "goodbye");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Normal));
}

#[tokio::test]
async fn a_frame_over_16_mib_closes_with_1009() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let mut socket = connect(&server, "/ws/upload").await;
    socket
        .send(Message::Text(
            json!({"type": "metadata", "filename": "huge.bin"}).to_string().into(),
        ))
        .await
        .unwrap();
    let _ = socket.send(Message::Binary(vec![0u8; 17 * 1024 * 1024].into())).await;
    let error = next_json(&mut socket).await;
    assert_eq!(error["error"], "frame_too_large", "{error}");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
    assert!(std::fs::read_dir(repo.path().join("blocks")).unwrap().next().is_none());
}

#[tokio::test]
async fn a_fragmented_upload_message_is_joined_not_dropped() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let repo = Repo::new();
    let data = bytes(300_000, 31);
    let expected = add(&repo, &data, &[]);
    let server = Server::start(&repo);
    let mut socket = connect(&server, "/ws/upload").await;
    socket
        .send(Message::Text(
            json!({"type": "metadata", "filename": "f.bin"}).to_string().into(),
        ))
        .await
        .unwrap();
    // One binary message sent as three fragments.
    let (first, rest) = data.split_at(100_000);
    let (middle, last) = rest.split_at(100_000);
    socket
        .send(Message::Frame(Frame::message(
            first.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await
        .unwrap();
    socket
        .send(Message::Frame(Frame::message(
            middle.to_vec(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
    socket
        .send(Message::Frame(Frame::message(
            last.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    socket
        .send(Message::Text(json!({"type": "complete"}).to_string().into()))
        .await
        .unwrap();
    let result = loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "progress" {
            break message;
        }
    };
    assert_eq!(result["cid"], expected.as_str(), "{result}");
    assert_eq!(result["size"], 300_000);
}

#[tokio::test]
async fn a_bidirectional_connection_holds_at_most_eight_transfers() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let mut socket = connect(&server, "/ws/bidirectional").await;
    for i in 0..8 {
        socket
            .send(Message::Text(
                json!({"command": "add", "filename": format!("{i}.bin")})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        assert_eq!(next_json(&mut socket).await["type"], "ready");
    }
    socket
        .send(Message::Text(
            json!({"command": "add", "filename": "ninth.bin"}).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "too_many_transfers");
    socket
        .send(Message::Text(json!({"command": "close"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "goodbye");
    drop(socket);
    // The eight unfinished uploads were failed: nothing became visible.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(std::fs::read_dir(repo.path().join("blocks")).unwrap().next().is_none());
}

#[tokio::test]
async fn sse_reconnecting_after_the_end_gets_204() {
    let repo = Repo::new();
    let cid = add(&repo, b"all of it\n", &[]);
    let server = Server::start(&repo);
    let response = reqwest::Client::new()
        .get(format!("{}/sse/stream/{cid}", server.base))
        .header("last-event-id", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "EventSource stops reconnecting on 204");
}
