//! WebRTC REST control and WHEP against a mocked WebRTC service: validation naming every bad field,
//! what reaches the model, status codes for limits and unknown ids, WHEP headers.

use std::sync::Arc;

use actix_web::test;
use model::content::service::MockContentService;
use model::stream_records::MockStreamMetrics;
use model::webrtc::{
    Answer, ConnectionInfo, IceServer, MockWebRtcService, PlayRequest, Quality, QualityChange, StreamInfo, Target,
};

use controllers::AppState;

const VIDEO: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

fn hub() -> Arc<model::notifications::NotificationHub> {
    let repository = Arc::new(model::notifications::MemoryNotificationRepository::default());
    Arc::new(model::notifications::NotificationHub::start(repository, 1000))
}

struct Reply {
    status: u16,
    headers: actix_web::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

async fn call(webrtc: MockWebRtcService, request: test::TestRequest) -> Reply {
    let state = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        hub(),
    )
    .with_webrtc(Arc::new(webrtc));
    let app = test::init_service(controllers::app(state, false)).await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = test::read_body(response).await.to_vec();
    Reply { status, headers, body }
}

fn connection(pc_id: &str) -> ConnectionInfo {
    ConnectionInfo {
        pc_id: pc_id.into(),
        stream_id: "st-1".into(),
        cid: VIDEO.into(),
        state: "connected".into(),
        quality: Quality::Auto,
        rendition: Quality::Medium,
        adaptable: false,
        created_at_ms: 0,
        frames_sent: 0,
        bytes_sent: 0,
    }
}

fn stream_info(id: &str) -> StreamInfo {
    StreamInfo {
        stream_id: id.into(),
        cid: VIDEO.into(),
        quality: Quality::Auto,
        renditions: vec![],
        adaptable: false,
        tracks: vec![],
        viewers: 0,
        state: "idle",
        buffer_size: 30,
        prefetch_threshold: 0.5,
        use_progressive_loading: true,
        created_at_ms: 0,
        instance: None,
        playback: None,
        benchmark: None,
    }
}

#[actix_web::test]
async fn the_list_holds_this_instances_streams_then_the_others_which_answer_by_id_too() {
    let elsewhere = || vec![serde_json::json!({"stream_id": "st-b", "instance": "b", "state": "elsewhere"})];
    let mut webrtc = MockWebRtcService::new();
    webrtc.expect_streams().returning(|| vec![stream_info("st-a")]);
    webrtc.expect_streams_elsewhere().returning(elsewhere);
    let list = call(webrtc, test::TestRequest::get().uri("/api/v1/webrtc/streams"))
        .await
        .json();
    assert_eq!(list["count"], 2);
    assert_eq!(list["streams"][0]["stream_id"], "st-a");
    assert_eq!(list["streams"][1]["instance"], "b");

    let mut webrtc = MockWebRtcService::new();
    webrtc.expect_stream().returning(|id| {
        Err(model::Error::UnknownId {
            kind: "stream",
            id: id.to_owned(),
        })
    });
    webrtc.expect_streams_elsewhere().returning(elsewhere);
    let request = || test::TestRequest::get();
    let mut again = MockWebRtcService::new();
    again.expect_stream().returning(|id| {
        Err(model::Error::UnknownId {
            kind: "stream",
            id: id.to_owned(),
        })
    });
    again.expect_streams_elsewhere().returning(elsewhere);
    let found = call(webrtc, request().uri("/api/v1/webrtc/streams/st-b")).await;
    assert_eq!(
        (found.status, found.json()["instance"].clone()),
        (200, serde_json::json!("b"))
    );
    assert_eq!(
        call(again, request().uri("/api/v1/webrtc/streams/st-c")).await.status,
        404
    );
}

#[actix_web::test]
async fn a_stream_request_with_bad_fields_names_each_and_reaches_nothing() {
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::post()
            .uri("/api/v1/webrtc/streams")
            .set_json(serde_json::json!({
                "cid": "not-a-cid", "buffer_size": 500, "prefetch_threshold": 0.95, "quality": "ultra",
                "port": 70000, "ice_servers": [{"urls": ["http://stun.example.org"]}],
                "renditions": [{"quality": "high", "cid": "nope"}, {"quality": "auto", "cid": VIDEO}],
            })),
    )
    .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    let fields = body["field"].as_str().unwrap();
    for field in [
        "buffer_size",
        "cid",
        "ice_servers[0].urls",
        "port",
        "prefetch_threshold",
        "quality",
        "renditions[0].cid",
        "renditions[1].quality",
    ] {
        assert!(fields.split(',').any(|f| f == field), "{field} in {body}");
    }
    assert!(
        body["message"].as_str().unwrap().contains("must be between 1 and 120"),
        "{body}"
    );

    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::post()
            .uri("/api/v1/webrtc/streams")
            .set_json(serde_json::json!({"cid": VIDEO, "colour": "blue"})),
    )
    .await;
    assert_eq!(reply.status, 400, "unknown fields are refused");

    // A value of the wrong type is named too, by its path.
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::post()
            .uri("/api/v1/webrtc/streams")
            .set_json(serde_json::json!({"cid": VIDEO, "renditions": [{"quality": "low", "cid": 7}]})),
    )
    .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["field"], "renditions[0].cid", "{body}");
    assert!(body["message"].as_str().unwrap().contains("invalid type"), "{body}");
}

#[actix_web::test]
async fn a_valid_stream_request_reaches_the_model_and_gets_its_urls() {
    let mut webrtc = MockWebRtcService::new();
    webrtc
        .expect_create_stream()
        .withf(|spec| {
            spec.cid.to_string() == VIDEO
                && spec.buffer.buffer_size == 60
                && spec.buffer.prefetch_threshold == 0.3
                && spec.quality == Quality::High
                && spec.renditions == vec![(Quality::Low, VIDEO.parse().unwrap())]
                && spec.ice_servers
                    == vec![IceServer {
                        urls: vec!["stun:stun.example.org:3478".into()],
                        username: None,
                        credential: None,
                    }]
                && !spec.progressive
        })
        .returning(|_| Ok(stream_info("st-1")));
    let reply = call(
        webrtc,
        test::TestRequest::post()
            .uri("/api/v1/webrtc/streams")
            .insert_header(("Host", "media.example.org:8080"))
            .set_json(serde_json::json!({
                "cid": VIDEO, "buffer_size": 60, "prefetch_threshold": 0.3, "quality": "high",
                "use_progressive_loading": false, "ice_servers": [{"urls": ["stun:stun.example.org:3478"]}],
                "renditions": [{"quality": "low", "cid": VIDEO}],
            })),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.json());
    let body = reply.json();
    assert_eq!(body["stream_id"], "st-1");
    assert_eq!(
        body["signaling_url"],
        "ws://media.example.org:8080/ws/webrtc?stream_id=st-1"
    );
    assert_eq!(body["whep_url"], "http://media.example.org:8080/whep/streams/st-1");
    assert_eq!(
        body["player_url"],
        "http://media.example.org:8080/player?stream_id=st-1"
    );
}

#[actix_web::test]
async fn limits_and_unknown_ids_map_to_429_503_and_404() {
    let mut webrtc = MockWebRtcService::new();
    webrtc
        .expect_create_stream()
        .returning(|_| Err(model::Error::LimitReached("10 streams exist, the limit is 10".into())));
    webrtc
        .expect_accept()
        .returning(|_, _| Err(model::Error::AtCapacity("2000 WebRTC connections open".into())));
    webrtc.expect_stats().returning(|id| {
        Err(model::Error::UnknownId {
            kind: "connection",
            id: id.into(),
        })
    });
    let webrtc = Arc::new(std::sync::Mutex::new(Some(webrtc)));
    let take = || webrtc.lock().unwrap().take().unwrap();
    let state = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        hub(),
    )
    .with_webrtc(Arc::new(take()));
    let app = test::init_service(controllers::app(state, false)).await;
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/webrtc/streams")
            .set_json(serde_json::json!({"cid": VIDEO}))
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 429);
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri(&format!("/whep/{VIDEO}"))
            .insert_header(("Content-Type", "application/sdp"))
            .set_payload("v=0\r\n")
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 503);
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/webrtc/connections/pc-x/stats")
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 404);
}

#[actix_web::test]
async fn whep_answers_with_location_etag_and_ice_links() {
    let mut webrtc = MockWebRtcService::new();
    webrtc
        .expect_accept()
        .withf(|request: &PlayRequest, offer: &str| {
            matches!(&request.target, Target::Cid(cid) if cid.to_string() == VIDEO)
                && request.quality == Some(Quality::Low)
                && request.buffer.is_some_and(|b| b.buffer_size == 10)
                && offer.starts_with("v=0")
        })
        .returning(|_, _| {
            Ok(Answer {
                pc_id: "pc-1".into(),
                stream_id: "st-1".into(),
                sdp: "v=0\r\nanswer".into(),
                ice_servers: vec![IceServer {
                    urls: vec!["stun:stun.example.org".into()],
                    username: None,
                    credential: None,
                }],
            })
        });
    let reply = call(
        webrtc,
        test::TestRequest::post()
            .uri(&format!("/whep/{VIDEO}?quality=low&buffer_size=10"))
            .insert_header(("Content-Type", "application/sdp"))
            .set_payload("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("location"), "/whep/sessions/pc-1");
    assert_eq!(reply.header("etag"), "\"pc-1\"");
    assert_eq!(reply.header("link"), "<stun:stun.example.org>; rel=\"ice-server\"");
    assert_eq!(reply.header("content-type"), "application/sdp");
    assert_eq!(reply.body, b"v=0\r\nanswer");
}

#[actix_web::test]
async fn whep_refuses_bad_offers_types_and_settings_before_the_model() {
    for (uri, content_type, body, status) in [
        (format!("/whep/{VIDEO}"), "application/json", "v=0", 415),
        (format!("/whep/{VIDEO}"), "application/sdp", "hello", 400),
        ("/whep/QmNope".to_owned(), "application/sdp", "v=0", 400),
        (format!("/whep/{VIDEO}?buffer_size=0"), "application/sdp", "v=0", 400),
        (
            format!("/whep/{VIDEO}?prefetch_threshold=2"),
            "application/sdp",
            "v=0",
            400,
        ),
        (format!("/whep/{VIDEO}?quality=ultra"), "application/sdp", "v=0", 400),
    ] {
        let reply = call(
            MockWebRtcService::new(),
            test::TestRequest::post()
                .uri(&uri)
                .insert_header(("Content-Type", content_type))
                .set_payload(body),
        )
        .await;
        assert_eq!(reply.status, status, "{uri} {content_type} {body}: {}", reply.json());
    }
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri(&format!("/whep/{VIDEO}")),
    )
    .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert!(reply.header("access-control-allow-methods").contains("PATCH"));
}

#[actix_web::test]
async fn trickled_candidates_and_quality_changes_reach_the_connection() {
    let mut webrtc = MockWebRtcService::new();
    webrtc
        .expect_add_candidate()
        .withf(|pc_id, candidate| pc_id == "pc-1" && candidate.sdp_mid.as_deref() == Some("0"))
        .times(1)
        .returning(|_, _| Ok(()));
    webrtc.expect_connections().returning(|| vec![connection("pc-1")]);
    let frag = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";
    let reply = call(
        webrtc,
        test::TestRequest::patch()
            .uri("/whep/sessions/pc-1")
            .insert_header(("Content-Type", "application/trickle-ice-sdpfrag"))
            .insert_header(("If-Match", "\"pc-1\""))
            .set_payload(frag),
    )
    .await;
    assert_eq!(reply.status, 204);
    // An unknown session, or one the ETag does not name: nothing is added.
    let mut webrtc = MockWebRtcService::new();
    webrtc.expect_connections().returning(Vec::new);
    let reply = call(
        webrtc,
        test::TestRequest::patch()
            .uri("/whep/sessions/pc-2")
            .insert_header(("Content-Type", "application/trickle-ice-sdpfrag"))
            .set_payload(frag),
    )
    .await;
    assert_eq!(reply.status, 404);
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::patch()
            .uri("/whep/sessions/pc-1")
            .insert_header(("Content-Type", "application/trickle-ice-sdpfrag"))
            .insert_header(("If-Match", "\"pc-9\""))
            .set_payload(frag),
    )
    .await;
    assert_eq!(reply.status, 412);

    let mut webrtc = MockWebRtcService::new();
    webrtc
        .expect_set_quality()
        .withf(|pc_id, quality| pc_id == "pc-1" && *quality == Quality::Medium)
        .returning(|pc_id, quality| {
            Ok(QualityChange {
                pc_id: pc_id.into(),
                quality,
                rendition: Quality::Medium,
                adaptable: true,
            })
        });
    let reply = call(
        webrtc,
        test::TestRequest::post()
            .uri("/api/v1/webrtc/connections/pc-1/quality")
            .set_json(serde_json::json!({"quality": "medium"})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["rendition"], "medium");
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::post()
            .uri("/api/v1/webrtc/connections/pc-1/quality")
            .set_json(serde_json::json!({"quality": "best"})),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["field"], "quality");
}

#[actix_web::test]
async fn connections_are_listed_and_closed_through_the_model() {
    let mut webrtc = MockWebRtcService::new();
    webrtc.expect_connections().returning(|| vec![connection("pc-1")]);
    let reply = call(webrtc, test::TestRequest::get().uri("/api/v1/webrtc/connections")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["count"], 1);
    let mut webrtc = MockWebRtcService::new();
    webrtc.expect_close_all().returning(|| 3);
    let reply = call(
        webrtc,
        test::TestRequest::post().uri("/api/v1/webrtc/connections/close-all"),
    )
    .await;
    assert_eq!(reply.json()["closed"], 3);
}

#[actix_web::test]
async fn without_webrtc_the_routes_say_so() {
    let state = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        hub(),
    );
    let app = test::init_service(controllers::app(state, false)).await;
    let response = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/v1/webrtc/streams").to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 503);
}

#[actix_web::test]
async fn the_player_page_is_served_from_the_binary() {
    let reply = call(MockWebRtcService::new(), test::TestRequest::get().uri("/player?cid=x")).await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains("/player/assets/player.js"));
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::get().uri("/player/assets/player.js"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains("/whep/"));
    let reply = call(
        MockWebRtcService::new(),
        test::TestRequest::get().uri("/player/assets/missing.js"),
    )
    .await;
    assert_eq!(reply.status, 404);
}
