//! Live notifications over /ws/notifications and their history, end to end.

mod common;

use common::{Repo, Server};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server) -> (Socket, Value) {
    let url = format!("{}/ws/notifications", server.base.replacen("http://", "ws://", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let welcome = next_json(&mut socket).await;
    (socket, welcome)
}

/// The next message, within 20 s.
async fn next_message(socket: &mut Socket) -> Message {
    tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
        .await
        .expect("a message within 20 s")
        .expect("the socket is open")
        .unwrap()
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match next_message(socket).await {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected JSON, got {other:?}"),
        }
    }
}

async fn ask(socket: &mut Socket, message: Value) -> Value {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
    next_json(socket).await
}

async fn upload(server: &Server, name: &str, body: &'static [u8]) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/content?name={name}", server.base))
        .body(body)
        .send()
        .await
        .unwrap();
    let added: Value = response.json().await.unwrap();
    added["cid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_action_protocol_answers_every_action() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let (mut socket, welcome) = connect(&server).await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["connection_id"].as_u64().is_some());
    let available = welcome["available_notifications"].as_array().unwrap();
    assert!(available.contains(&json!("content_added")) && available.contains(&json!("webrtc_quality_changed")));

    let confirmed = ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["content_added", "no_such_type"]}),
    )
    .await;
    assert_eq!(confirmed["type"], "subscription_confirmed");
    assert_eq!(confirmed["notification_types"], json!(["content_added"]));
    assert_eq!(confirmed["invalid_types"], json!(["no_such_type"]));

    let cid = upload(&server, "a.txt", b"hello world\n").await;
    let event = next_json(&mut socket).await;
    assert_eq!(event["type"], "notification");
    assert_eq!(event["notification_type"], "content_added");
    assert_eq!(event["data"]["cid"], cid.as_str());
    assert_eq!(event["data"]["name"], "a.txt");
    assert!(event["timestamp"].as_i64().unwrap() > 0);

    assert_eq!(ask(&mut socket, json!({"action": "ping"})).await["type"], "pong");
    let metrics = ask(&mut socket, json!({"action": "get_metrics"})).await;
    assert_eq!(metrics["type"], "metrics");
    assert_eq!(metrics["metrics"]["active_connections"], 1);
    assert_eq!(metrics["metrics"]["subscriptions_by_type"]["content_added"], 1);
    let info = ask(&mut socket, json!({"action": "get_info"})).await;
    assert_eq!(info["type"], "connection_info");
    assert_eq!(info["connection_id"], welcome["connection_id"]);
    assert_eq!(info["subscriptions"], json!(["content_added"]));

    // History is written in batches: ask until the event is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let history = ask(
            &mut socket,
            json!({"action": "get_history", "limit": 10, "notification_type": "content_added"}),
        )
        .await;
        assert_eq!(history["type"], "history");
        if history["count"] == 1 {
            assert_eq!(history["events"][0]["data"]["cid"], cid.as_str());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "history never showed the event");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Bad messages get errors naming the problem; the connection stays usable.
    for (message, code) in [
        ("not json".to_owned(), "invalid_json"),
        (json!({"type": "subscribe"}).to_string(), "missing_action"),
        (json!({"action": "dance"}).to_string(), "unknown_action"),
        (
            json!({"action": "get_history", "limit": 0}).to_string(),
            "invalid_parameter",
        ),
        (
            json!({"action": "get_history", "notification_type": "nope"}).to_string(),
            "invalid_type",
        ),
    ] {
        socket.send(Message::Text(message.clone().into())).await.unwrap();
        let reply = next_json(&mut socket).await;
        assert_eq!(
            (reply["type"].as_str(), reply["error"].as_str()),
            (Some("error"), Some(code)),
            "{message}"
        );
    }

    let unsubscribed = ask(&mut socket, json!({"action": "unsubscribe"})).await;
    assert_eq!(unsubscribed["type"], "unsubscription_confirmed");
    assert_eq!(unsubscribed["notification_types"], json!([]));
    upload(&server, "b.txt", b"second\n").await;
    assert_eq!(
        ask(&mut socket, json!({"action": "ping"})).await["type"],
        "pong",
        "no event arrives unsubscribed"
    );
}

#[tokio::test]
async fn filters_select_events_by_their_data() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let (mut socket, _) = connect(&server).await;
    let confirmed = ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["all_events"], "filters": {"data.name": "wanted.txt"}}),
    )
    .await;
    assert_eq!(confirmed["filters"]["data.name"], "wanted.txt");
    upload(&server, "other.txt", b"other\n").await;
    upload(&server, "wanted.txt", b"wanted\n").await;
    let event = next_json(&mut socket).await;
    assert_eq!(event["data"]["name"], "wanted.txt", "the other upload was filtered out");
}

#[tokio::test]
async fn downloads_publish_content_retrieved() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let cid = upload(&server, "c.txt", b"retrieve me\n").await;
    let (mut socket, _) = connect(&server).await;
    ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": "content_retrieved"}),
    )
    .await;
    let body = reqwest::get(format!("{}/ipfs/{cid}", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "retrieve me\n");
    let event = next_json(&mut socket).await;
    assert_eq!(event["notification_type"], "content_retrieved");
    assert_eq!(event["data"]["path"], format!("/ipfs/{cid}"));
    assert_eq!(event["data"]["bytes"], 12);
    assert_eq!(event["source"], "http");
}

#[tokio::test]
async fn history_survives_a_restart() {
    let repo = Repo::new();
    let cid = {
        let server = Server::start(&repo);
        let cid = upload(&server, "kept.txt", b"kept\n").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let history: Value = reqwest::get(format!(
                "{}/api/v1/notifications/history?notification_type=content_added",
                server.base
            ))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            if history.as_array().unwrap().len() == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "history was not written");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        cid
    };
    let server = Server::start(&repo);
    // (The restarted server's sampler publishes system_metrics of its own.)
    let history: Value = reqwest::get(format!(
        "{}/api/v1/notifications/history?notification_type=content_added",
        server.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["notification_type"], "content_added");
    assert_eq!(events[0]["data"]["cid"], cid.as_str());
    let bad = reqwest::get(format!("{}/api/v1/notifications/history?limit=0", server.base))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// The next message that is not a text.
async fn next_control(socket: &mut Socket) -> Message {
    loop {
        let message = next_message(socket).await;
        if !matches!(message, Message::Text(_)) {
            return message;
        }
    }
}

#[tokio::test]
async fn pings_are_answered_binary_is_refused_and_a_message_over_64_kib_closes_with_1009() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let (mut socket, _) = connect(&server).await;
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match next_control(&mut socket).await {
        Message::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let refused = next_json(&mut socket).await;
    assert_eq!(
        (refused["type"].as_str(), refused["error"].as_str()),
        (Some("error"), Some("unsupported"))
    );
    assert_eq!(
        ask(&mut socket, json!({"action": "ping"})).await["type"],
        "pong",
        "still open"
    );

    let oversized = format!(r#"{{"action":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    socket.send(Message::Text(oversized.into())).await.unwrap();
    match next_control(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Size);
            assert_eq!(frame.reason.as_str(), "message_too_large");
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_normally() {
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--notification-idle-timeout", "1"]);
    let (mut socket, _) = connect(&server).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| f.code);
            }
        }
        None
    })
    .await
    .expect("closed within 20 s");
    assert_eq!(closed, Some(CloseCode::Normal));
}

#[tokio::test]
async fn clients_publish_custom_and_system_events_only() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let (mut socket, _) = connect(&server).await;
    ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["custom_event"]}),
    )
    .await;
    let client = reqwest::Client::new();
    let published = client
        .post(format!("{}/api/v1/notifications", server.base))
        .json(&json!({"notification_type": "custom_event", "data": {"hello": "world"}, "source": "tester"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    let event = next_json(&mut socket).await;
    assert_eq!(
        (event["data"]["hello"].as_str(), event["source"].as_str()),
        (Some("world"), Some("tester"))
    );

    for (body, field) in [
        (
            json!({"notification_type": "content_added", "data": {}}),
            "notification_type",
        ),
        (json!({"notification_type": "custom_event", "data": [1, 2]}), "data"),
    ] {
        let response = client
            .post(format!("{}/api/v1/notifications", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["field"], field);
    }
    let response = client
        .post(format!("{}/api/v1/notifications", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_json");
}

async fn publish_custom(server: &Server, i: u64) {
    publish_custom_data(&reqwest::Client::new(), server, json!({"i": i})).await;
}

async fn publish_custom_data(client: &reqwest::Client, server: &Server, data: Value) {
    let published = client
        .post(format!("{}/api/v1/notifications", server.base))
        .json(&json!({"notification_type": "custom_event", "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
}

/// The next custom event, as (i, id).
async fn next_custom(socket: &mut Socket) -> (u64, i64) {
    let event = next_json(socket).await;
    assert_eq!(event["notification_type"], "custom_event", "{event}");
    (event["data"]["i"].as_u64().unwrap(), event["id"].as_i64().unwrap())
}

#[tokio::test]
async fn a_client_that_resumes_after_the_last_id_it_saw_misses_nothing_and_sees_nothing_twice() {
    let repo = Repo::new();
    let subscribe = json!({"action": "subscribe", "notification_types": ["custom_event"]});
    let seen_second = {
        let server = Server::start(&repo);
        let (mut socket, _) = connect(&server).await;
        ask(&mut socket, subscribe.clone()).await;
        for i in 1..=3 {
            publish_custom(&server, i).await;
        }
        let mut seen = Vec::new();
        for _ in 1..=3 {
            seen.push(next_custom(&mut socket).await);
        }
        assert!(seen.windows(2).all(|pair| pair[0].1 < pair[1].1), "ids grow: {seen:?}");
        drop(socket);
        // Published while the client is away.
        publish_custom(&server, 4).await;
        // A read of the history writes what waits (the server is then killed, not stopped).
        reqwest::get(format!("{}/api/v1/notifications/history", server.base))
            .await
            .unwrap();
        seen[1].1
    };
    // A restart in between: ids go on growing.
    let server = Server::start(&repo);
    publish_custom(&server, 5).await;
    let (mut socket, _) = connect(&server).await;
    let mut resume = subscribe.clone();
    resume["after_id"] = seen_second.into();
    let confirmed = ask(&mut socket, resume).await;
    assert_eq!(confirmed["type"], "subscription_confirmed");
    assert_eq!(confirmed["resumed"], 3, "{confirmed}");
    assert_eq!(confirmed["missed_types"], json!([]), "the history kept all it missed");
    publish_custom(&server, 6).await;
    let mut received = Vec::new();
    for _ in 3..=6 {
        received.push(next_custom(&mut socket).await);
    }
    assert_eq!(
        received.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [3, 4, 5, 6],
        "the missed events, then the live one"
    );
    assert!(received.windows(2).all(|pair| pair[0].1 < pair[1].1), "{received:?}");
    assert!(received[0].1 > seen_second);
    let pong = ask(&mut socket, json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "nothing came twice");
    let refused = ask(&mut socket, json!({"action": "get_history", "after_id": -1})).await;
    assert_eq!(
        (refused["type"].as_str(), refused["error"].as_str()),
        (Some("error"), Some("invalid_parameter"))
    );

    let page: Value = reqwest::get(format!(
        "{}/api/v1/notifications/history?notification_type=custom_event&after_id={seen_second}&limit=2",
        server.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let page: Vec<_> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(page, [3, 4], "the history pages forward from an id");
    let bad = reqwest::get(format!("{}/api/v1/notifications/history?after_id=-1", server.base))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_client_away_for_longer_than_the_history_keeps_is_told_which_types_it_missed() {
    let repo = Repo::new();
    let server = Server::start_with(&repo, &["--notification-history", "3"]);
    let (mut socket, _) = connect(&server).await;
    ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["custom_event"]}),
    )
    .await;
    publish_custom(&server, 1).await;
    let (_, seen) = next_custom(&mut socket).await;
    drop(socket);
    // Nineteen while the client is away, and the history keeps three of a type: however the writes
    // (every 500 ms) split them, some after the one seen are let go. The table may hold more than
    // three for a while (it is pruned every few seconds).
    for i in 2..=20 {
        publish_custom(&server, i).await;
    }

    let (mut socket, _) = connect(&server).await;
    let confirmed = ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["custom_event", "pin_added"], "after_id": seen}),
    )
    .await;
    assert_eq!(confirmed["missed_types"], json!(["custom_event"]), "{confirmed}");
    let resumed = confirmed["resumed"].as_u64().unwrap();
    assert!(resumed >= 3, "{confirmed}");
    let mut received = Vec::new();
    for _ in 0..resumed {
        received.push(next_custom(&mut socket).await.0);
    }
    assert!(received.is_sorted() && received[0] >= 2, "{received:?}");
    assert_eq!(
        received[received.len() - 3..],
        [18, 19, 20],
        "the newest three are kept"
    );

    let history = ask(&mut socket, json!({"action": "get_history", "after_id": seen})).await;
    assert_eq!(history["missed_types"], json!(["custom_event"]));
    let events = history["events"].as_array().unwrap();
    let oldest_of_the_newest = events.iter().find(|event| event["data"]["i"] == 18).unwrap();
    let one_type = json!({"action": "get_history", "after_id": seen, "notification_type": "pin_added"});
    assert_eq!(ask(&mut socket, one_type).await["missed_types"], json!([]));
    let latest = ask(&mut socket, json!({"action": "get_history"})).await;
    assert!(
        latest.get("missed_types").is_none(),
        "only a read after an id can miss: {latest}"
    );
    let missed_header = |query: String| {
        let url = format!("{}/api/v1/notifications/history?{query}", server.base);
        async move {
            let page = reqwest::get(url).await.unwrap();
            assert_eq!(page.status(), 200);
            let header = page.headers().get("missed-types");
            header.map(|value| value.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        missed_header(format!("after_id={seen}")).await.as_deref(),
        Some("custom_event")
    );
    let pins = format!("after_id={seen}&notification_type=pin_added");
    assert_eq!(missed_header(pins).await.as_deref(), Some(""));
    assert_eq!(missed_header("limit=5".into()).await, None);

    // Types not subscribed to are not named, and nothing was missed after the newest let go.
    let (mut other, _) = connect(&server).await;
    let pins = json!({"action": "subscribe", "notification_types": ["pin_added"], "after_id": seen});
    assert_eq!(ask(&mut other, pins).await["missed_types"], json!([]));
    let (mut late, _) = connect(&server).await;
    // Every event let go had three newer ones of its type.
    let after_all_dropped = oldest_of_the_newest["id"].as_i64().unwrap() - 1;
    let resume = json!({"action": "subscribe", "notification_types": ["all_events"], "after_id": after_all_dropped});
    assert_eq!(ask(&mut late, resume).await["missed_types"], json!([]));
    let (mut later, _) = connect(&server).await;
    let resume = json!({"action": "subscribe", "notification_types": ["all_events"], "after_id": seen});
    assert_eq!(ask(&mut later, resume).await["missed_types"], json!(["custom_event"]));
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_told_why_and_closed_with_1008() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let (mut socket, _) = connect(&server).await;
    let confirmed = ask(
        &mut socket,
        json!({"action": "subscribe", "notification_types": ["custom_event"]}),
    )
    .await;
    assert_eq!(confirmed["type"], "subscription_confirmed");
    // More than the socket's buffers and the subscriber's queue of 1024 events can hold, while
    // this client reads nothing.
    let padding = "x".repeat(16 * 1024);
    let client = reqwest::Client::new();
    for i in 0..3000 {
        publish_custom_data(&client, &server, json!({"i": i, "padding": padding})).await;
    }
    let mut events = 0;
    let told = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
        {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "notification" {
                    events += 1;
                    continue;
                }
                break message;
            }
            other => panic!("expected the slow_consumer error, got {other:?} after {events} events"),
        }
    };
    assert_eq!(told["type"], "error", "{told}");
    assert_eq!(told["error"], "slow_consumer", "{told}");
    assert!(events < 3000, "every event arrived: nothing was dropped");
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert_eq!(frame.reason, "slow_consumer");
        }
        other => panic!("expected a close with 1008, got {other:?}"),
    }
}
