//! Handlers against a mocked content service: parsing, validation and error mapping, with no store.

use std::sync::Arc;

use actix_web::{App, test};
use cid::Cid;
use model::content::service::MockContentService;
use model::content::{ContentRecord, ImportOptions};
use model::metrics::MockStreamMetrics;

use controllers::{AppState, Limits};

const HELLO: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

async fn call(content: MockContentService, limits: Limits, request: test::TestRequest) -> (u16, serde_json::Value) {
    let mut metrics = MockStreamMetrics::new();
    metrics.expect_record().return_const(());
    let state = AppState::new(Arc::new(content), Arc::new(metrics), hub()).with_limits(limits);
    let app = test::init_service(App::new().configure(|cfg| controllers::configure(cfg, state))).await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

fn record(cid: Cid, size: u64) -> ContentRecord {
    ContentRecord {
        cid,
        size,
        name: None,
        content_type: None,
        cid_version: 1,
        blocks: 1,
        created_at_ms: 0,
        pinned: true,
    }
}

fn hub() -> Arc<model::notifications::NotificationHub> {
    let repository = Arc::new(model::notifications::MemoryNotificationRepository::default());
    Arc::new(model::notifications::NotificationHub::start(repository, 1000))
}

#[actix_web::test]
async fn a_malformed_cid_is_rejected_before_the_model_is_asked() {
    // No expectation is set: any call into the model would fail the test.
    let (status, body) = call(
        MockContentService::new(),
        Limits::default(),
        test::TestRequest::get().uri("/ipfs/QmNotACid"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_cid");
}

#[actix_web::test]
async fn model_errors_map_to_statuses() {
    let cases: Vec<(model::Error, u16, &str)> = vec![
        (model::Error::NotFound(HELLO.parse().unwrap()), 404, "not_found"),
        (
            model::Error::NoSuchPath {
                parent: HELLO.parse().unwrap(),
                name: "x".into(),
            },
            404,
            "no_such_path",
        ),
        (
            model::Error::HashMismatch(HELLO.parse().unwrap()),
            500,
            "corrupted_block",
        ),
        (model::Error::Store("disk full".into()), 500, "store_error"),
    ];
    for (error, status, code) in cases {
        let mut content = MockContentService::new();
        let error = std::sync::Mutex::new(Some(error));
        content
            .expect_resolve()
            .returning(move |_, _| Err(error.lock().unwrap().take().unwrap()));
        let (got, body) = call(
            content,
            Limits::default(),
            test::TestRequest::get().uri(&format!("/ipfs/{HELLO}/x")),
        )
        .await;
        assert_eq!((got, body["error"].as_str()), (status, Some(code)));
    }
}

#[actix_web::test]
async fn upload_options_reach_the_model_parsed() {
    let mut content = MockContentService::new();
    content
        .expect_add()
        .withf(|_, request| {
            request.options == ImportOptions::new(Some(1), None, Some("size-1024")).unwrap()
                && !request.pin
                && request.name.as_deref() == Some("clip.mp4")
                && request.content_type.as_deref() == Some("video/mp4")
                && request.limit == Some(Limits::default().max_upload_bytes)
        })
        .returning(|_, _| Ok(record(HELLO.parse().unwrap(), 12)));
    let request = test::TestRequest::post()
        .uri("/api/v1/content?cid_version=1&chunker=size-1024&pin=false&name=clip.mp4")
        .insert_header(("content-type", "video/mp4"))
        .set_payload("hello world\n");
    let (status, body) = call(content, Limits::default(), request).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["cid"], HELLO);
}

#[actix_web::test]
async fn a_declared_oversized_upload_never_reaches_the_model() {
    let request = test::TestRequest::post()
        .uri("/api/v1/content")
        .insert_header(("content-length", "1001"))
        .set_payload(vec![0u8; 1001]);
    let (status, body) = call(
        MockContentService::new(),
        Limits {
            max_upload_bytes: 1000,
            ..Limits::default()
        },
        request,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")));
}

#[actix_web::test]
async fn deleting_unknown_content_is_404() {
    let mut content = MockContentService::new();
    content
        .expect_remove()
        .returning(|cid| Err(model::Error::NotFound(*cid)));
    let (status, body) = call(
        content,
        Limits::default(),
        test::TestRequest::delete().uri(&format!("/api/v1/content/{HELLO}")),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}
