//! WebRTC playback end to end: the real binary, media uploaded over HTTP, a webrtc-rs receiver
//! negotiating over the WebSocket signaling and over WHEP, frames received from a keyframe,
//! paced; the REST control, events and stream records; bad input; clean-up when a client vanishes.

mod common;

use std::time::{Duration, Instant};

use common::{Repo, Server};
use futures::{SinkExt, StreamExt};
use model::webrtc::Receiver;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn add_fixture(server: &Server, name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(path).unwrap();
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

async fn get_json(url: &str) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

async fn wait_for(what: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    what()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

/// The next message of `kind`, passing server candidates to `receiver` on the way.
async fn expect(socket: &mut Socket, kind: &str, receiver: Option<&Receiver>) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["type"] == kind {
            return message;
        }
        match message["type"].as_str() {
            Some("candidate") => {
                if let Some(receiver) = receiver {
                    let _ = receiver.add_candidate(common::signaled_candidate(&message)).await;
                }
            }
            Some("connection_state") | Some("candidate_result") => {}
            _ => panic!("expected {kind}, got {message}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_signaling_plays_a_stored_webm_from_a_keyframe() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let cid = add_fixture(&server, "vp8-opus.webm").await;
    let ws_url = format!("{}/ws/webrtc", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let welcome = next_json(&mut socket).await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["client_id"].is_string());
    assert!(welcome["capabilities"]["qualities"].as_array().unwrap().len() == 4);

    // Bad input first: each gets an error naming the problem, the socket stays open.
    for (message, code) in [
        ("{not json".to_owned(), "invalid_json"),
        (json!({"type": "dance"}).to_string(), "unknown_type"),
        (json!({"type": "offer_request"}).to_string(), "missing_field"),
        (
            json!({"type": "offer_request", "cid": cid, "buffer_size": 500}).to_string(),
            "invalid_parameter",
        ),
        (
            json!({"type": "offer_request", "cid": "QmNope"}).to_string(),
            "invalid_parameter",
        ),
        (
            json!({"type": "answer", "pc_id": "pc-unknown", "sdp": "v=0"}).to_string(),
            "unknown_pc_id",
        ),
        (
            json!({"type": "candidate", "pc_id": "pc-unknown", "candidate": "candidate:1"}).to_string(),
            "unknown_pc_id",
        ),
    ] {
        socket.send(Message::text(message.clone())).await.unwrap();
        let reply = next_json(&mut socket).await;
        assert_eq!(reply["type"], "error", "{message}: {reply}");
        assert_eq!(reply["error"], code, "{message}: {reply}");
    }
    let unknown_type = json!({"type": "dance"}).to_string();
    socket.send(Message::text(unknown_type)).await.unwrap();
    assert_eq!(next_json(&mut socket).await["message"], "Unknown message type: dance");

    socket
        .send(Message::text(
            json!({"type": "offer_request", "cid": cid, "buffer_size": 20, "prefetch_threshold": 0.4}).to_string(),
        ))
        .await
        .unwrap();
    let offer = expect(&mut socket, "offer", None).await;
    let pc_id = offer["pc_id"].as_str().unwrap().to_owned();
    let codecs: Vec<&str> = offer["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["codec"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["VP8", "Opus"]);
    let (receiver, mut candidates) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let answer = receiver.answer(offer["sdp"].as_str().unwrap()).await.unwrap();
    socket
        .send(Message::text(
            json!({"type": "answer", "pc_id": pc_id, "sdp": answer}).to_string(),
        ))
        .await
        .unwrap();
    let result = expect(&mut socket, "answer_result", Some(&receiver)).await;
    assert_eq!(result["success"], true);
    // Trickle our candidates; relay the server's until connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver.connected(Duration::from_millis(20)).await && Instant::now() < deadline {
        while let Ok(candidate) = candidates.try_recv() {
            let message = json!({"type": "candidate", "pc_id": pc_id, "candidate": candidate.candidate,
                                 "sdpMid": candidate.sdp_mid, "sdpMLineIndex": candidate.sdp_mline_index});
            socket.send(Message::text(message.to_string())).await.unwrap();
        }
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_millis(50), socket.next()).await
        {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "candidate" {
                let _ = receiver.add_candidate(common::signaled_candidate(&message)).await;
            }
        }
    }
    assert!(
        receiver.connected(Duration::from_secs(1)).await,
        "connected over trickled ICE"
    );
    // A candidate of another username fragment would restart ICE: refused by name, the
    // connection goes on.
    let restart = json!({"type": "candidate", "pc_id": pc_id, "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                         "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "restart1"});
    socket.send(Message::text(restart.to_string())).await.unwrap();
    let refused = expect(&mut socket, "error", Some(&receiver)).await;
    assert_eq!(refused["error"], "unprocessable", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("ICE restart"),
        "{refused}"
    );
    let video = |r: &Receiver| {
        r.frames()
            .into_iter()
            .filter(|f| f.mime_type.eq_ignore_ascii_case("video/vp8"))
            .collect::<Vec<_>>()
    };
    assert!(wait_for(|| video(&receiver).len() >= 30, Duration::from_secs(10)).await);
    let frames = video(&receiver);
    assert!(frames[0].keyframe, "the first frame is a keyframe");
    // WebM stamps frames in milliseconds: 66 or 67 ms apart, 6000 ticks of 90 kHz on average.
    for pair in frames.windows(2) {
        let step = pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp);
        assert!((5900..=6100).contains(&step), "15 fps on the 90 kHz clock: {step}");
    }
    let span = frames[frames.len() - 1]
        .rtp_timestamp
        .wrapping_sub(frames[0].rtp_timestamp);
    let average = f64::from(span) / (frames.len() - 1) as f64;
    assert!((average - 6000.0).abs() < 40.0, "{average}");
    assert!(
        receiver
            .frames()
            .iter()
            .any(|f| f.mime_type.eq_ignore_ascii_case("audio/opus"))
    );

    // The Prometheus view: one session at the rendition sent, frames counted.
    let metrics = client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ipfs_stream_webrtc_sessions{quality=\"medium\"} 1"),
        "{metrics}"
    );
    let frames_sent: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ipfs_stream_webrtc_frames_sent_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(frames_sent >= 30.0, "{frames_sent}");

    // The REST view of the same connection, and its stats over the socket.
    let connections = get_json(&format!("{}/api/v1/webrtc/connections", server.base)).await;
    assert_eq!(connections["count"], 1);
    socket
        .send(Message::text(
            json!({"type": "stats_request", "pc_id": pc_id}).to_string(),
        ))
        .await
        .unwrap();
    let stats = expect(&mut socket, "stats", None).await;
    assert!(
        stats["stats"]["buffer"]["frames_sent"].as_u64().unwrap() >= 30,
        "{stats}"
    );
    assert!(
        stats["stats"]["buffer"]["buffer_target"].as_u64().unwrap() >= 20,
        "{stats}"
    );
    assert!(stats["stats"]["transport"]["bandwidth_estimate_bps"].as_f64().unwrap() > 0.0);
    socket
        .send(Message::text(
            json!({"type": "quality_change", "pc_id": pc_id, "quality": "low"}).to_string(),
        ))
        .await
        .unwrap();
    let quality = expect(&mut socket, "quality_result", None).await;
    assert_eq!(quality["adaptable"], false);

    // Closing the socket closes its connection; the count returns to 0 and a record is written.
    drop(socket);
    let base = server.base.clone();
    let mut closed = false;
    for _ in 0..100 {
        if get_json(&format!("{base}/api/v1/webrtc/connections")).await["count"] == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the socket's connections are closed with it");
    let mut recorded = false;
    for _ in 0..50 {
        let history = get_json(&format!("{base}/api/v1/metrics/streaming/history?stream_type=webrtc")).await;
        if history.as_array().is_some_and(|records| {
            records
                .iter()
                .any(|r| r["path"] == cid.as_str() && r["bytes"].as_u64() > Some(0))
        }) {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = get_json(&format!("{base}/api/v1/metrics/streaming/history?stream_type=webrtc")).await;
    assert!(recorded, "the session is in the streaming metrics: {history}");
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_plays_a_created_stream_and_rest_controls_it() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let cid = add_fixture(&server, "h264-baseline-opus.mp4").await;
    let aac = add_fixture(&server, "h264-aac.mp4").await;
    let streams = format!("{}/api/v1/webrtc/streams", server.base);

    let refused = client().post(&streams).json(&json!({"cid": aac})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 415);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("AAC"), "{body}");
    let missing = client()
        .post(&streams)
        .json(&json!({"cid": "bafkreie7ohywtosou76tasm7j63yigtzxe7d5zqus4zu3j6oltvgtibeom"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let created = client()
        .post(&streams)
        .json(&json!({"cid": cid, "quality": "medium", "buffer_size": 15}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let whep_url = created["whep_url"].as_str().unwrap().to_owned();
    assert!(created["player_url"].as_str().unwrap().contains("/player?stream_id="));

    let (receiver, _) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let offer = receiver.offer(Duration::from_secs(2)).await.unwrap();
    let bad = client()
        .post(&whep_url)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\nthis is not an offer\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400, "a malformed offer is refused");
    let offer_ufrag = model::webrtc::ice_ufrag(&offer).unwrap().to_owned();
    let response = client()
        .post(&whep_url)
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(response.headers().contains_key("etag"));
    let answer = response.text().await.unwrap();
    receiver.accept_answer(&answer).await.unwrap();
    assert!(receiver.connected(Duration::from_secs(10)).await);
    let h264 = |r: &Receiver| {
        r.frames()
            .into_iter()
            .filter(|f| f.mime_type.eq_ignore_ascii_case("video/h264"))
            .collect::<Vec<_>>()
    };
    assert!(wait_for(|| h264(&receiver).len() >= 10, Duration::from_secs(10)).await);
    assert!(
        h264(&receiver)[0].keyframe,
        "H.264 starts on an IDR: {:?}",
        &h264(&receiver)[..4]
    );

    let listed = get_json(&streams).await;
    assert_eq!(listed["streams"][0]["viewers"], 1);
    assert_eq!(listed["streams"][0]["buffer_size"], 15);
    let connections = get_json(&format!("{}/api/v1/webrtc/connections", server.base)).await;
    let pc_id = connections["connections"][0]["pc_id"].as_str().unwrap().to_owned();
    let stats = get_json(&format!("{}/api/v1/webrtc/connections/{pc_id}/stats", server.base)).await;
    assert!(stats["transport"]["frames_sent"].as_u64().unwrap() > 0, "{stats}");

    let patch = client()
        .patch(format!("{}{location}", server.base))
        .header("Content-Type", "application/trickle-ice-sdpfrag")
        .body("a=end-of-candidates\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status().as_u16(), 204);
    // The session's own username fragment trickles; another one is an ICE restart (RFC 9725:
    // If-Match "*"), which the session refuses by name and survives.
    let frag = |ufrag: &str| {
        format!(
            "a=ice-ufrag:{ufrag}\r\na=ice-pwd:0123456789abcdefghijkl\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        )
    };
    let patch = |body: String, if_match: &'static str| {
        client()
            .patch(format!("{}{location}", server.base))
            .header("Content-Type", "application/trickle-ice-sdpfrag")
            .header("If-Match", if_match)
            .body(body)
            .send()
    };
    let trickled = patch(frag(&offer_ufrag), "*").await.unwrap();
    assert_eq!(trickled.status().as_u16(), 204);
    for restart in [
        frag("restart1"),
        "a=ice-ufrag:restart1\r\na=ice-pwd:0123456789abcdefghijkl\r\n".to_owned(),
    ] {
        let refused = patch(restart, "*").await.unwrap();
        assert_eq!(refused.status().as_u16(), 422);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "unprocessable", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("ICE restart is not supported"),
            "{body}"
        );
    }
    let before = h264(&receiver).len();
    assert!(
        wait_for(|| h264(&receiver).len() > before + 5, Duration::from_secs(10)).await,
        "still playing"
    );
    let deleted = client()
        .delete(format!("{}{location}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let again = client()
        .delete(format!("{}{location}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let connections = get_json(&format!("{}/api/v1/webrtc/connections", server.base)).await;
    assert_eq!(connections["count"], 0);
    let stream_id = created["stream_id"].as_str().unwrap();
    let gone = client().delete(format!("{streams}/{stream_id}")).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 204);
    assert_eq!(get_json(&streams).await["count"], 0);
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_vanishes_is_cleaned_up() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let cid = add_fixture(&server, "vp8.ivf").await;
    let (receiver, _) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let offer = receiver.offer(Duration::from_secs(2)).await.unwrap();
    let response = client()
        .post(format!("{}/whep/{cid}", server.base))
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    receiver.accept_answer(&response.text().await.unwrap()).await.unwrap();
    assert!(receiver.connected(Duration::from_secs(10)).await);
    // The client goes away without a word: DTLS close_notify ends the connection on the server.
    receiver.close().await;
    drop(receiver);
    let mut count = Value::Null;
    for _ in 0..300 {
        count = get_json(&format!("{}/api/v1/webrtc/connections", server.base)).await["count"].clone();
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_drives_webrtc_viewers_among_the_others() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let output = repo
        .command(&[
            "simulate",
            "--server",
            &server.base,
            "--viewers",
            "16",
            "--duration",
            "12",
            "--media",
            "1",
            "--drop-rate",
            "0",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let webrtc = &summary["transports"]["webrtc"];
    assert!(webrtc["sessions"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(webrtc["errors"], 0, "{summary}");
    assert!(webrtc["bytes"].as_u64().unwrap() > 0, "{summary}");
    // Every WebRTC connection the simulator opened was closed again.
    let connections = get_json(&format!("{}/api/v1/webrtc/connections", server.base)).await;
    assert_eq!(connections["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_lossy_link_lost_packets_are_repaired_over_rtx() {
    use ipfs_stream::impaired_link::{Impairment, Relay, route_through, without_candidates};
    let repo = Repo::new();
    let server = Server::start(&repo);
    let cid = add_fixture(&server, "vp8-8s.webm").await;
    // 5% of what the server sends lost at random, 50 ms round trip.
    let relay = Relay::new(Impairment {
        loss: 0.05,
        delay: Duration::from_millis(25),
        jitter: Duration::from_millis(3),
        seed: 20,
        ..Default::default()
    });
    let (receiver, _) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let offer = receiver.offer(Duration::from_secs(2)).await.unwrap();
    let response = client()
        .post(format!("{}/whep/{cid}?buffer_size=30", server.base))
        .header("Content-Type", "application/sdp")
        .body(without_candidates(&offer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let pc_id = response.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (answer, _link) = route_through(&relay, &response.text().await.unwrap()).await.unwrap();
    receiver.accept_answer(&answer).await.unwrap();
    assert!(receiver.connected(Duration::from_secs(10)).await);
    // The clip (240 frames in 8 s) plays through the link, to its end: no new frame for 2 s.
    let seen = |r: &Receiver| r.video_playback().frames_received + r.frames_given_up() as usize;
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last = (0, Instant::now());
    while Instant::now() < deadline && (last.0 == 0 || last.1.elapsed() < Duration::from_secs(2)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if seen(&receiver) != last.0 {
            last = (seen(&receiver), Instant::now());
        }
    }
    assert!(
        seen(&receiver) >= 200,
        "most of the clip came: {:?}",
        receiver.video_playback()
    );
    let counts = relay.counts();
    assert!(counts.lost_random > 5, "the link lost packets: {counts:?}");
    assert!(receiver.late_packets() > 0, "lost packets came again");
    let stats = get_json(&format!("{}/api/v1/webrtc/connections/{pc_id}/stats", server.base)).await;
    assert_eq!(stats["transport"]["repair"], "rtx", "{stats}");
    assert!(
        stats["transport"]["packets_retransmitted"].as_u64().unwrap() > 0,
        "{stats}"
    );
    // Nearly every frame that came decodable. Unrepaired, 5% of packets lost would break about one
    // frame in twelve and every frame after it up to the next keyframe (2 s later): half the clip.
    let playback = receiver.video_playback();
    assert!(
        playback.frames_decodable >= seen(&receiver) * 95 / 100,
        "{playback:?}, {} given up, {counts:?}, {stats}",
        receiver.frames_given_up()
    );
    receiver.close().await;
}
