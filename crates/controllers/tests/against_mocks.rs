//! Handlers against a mocked content service: parsing, validation and error mapping, with no store.

use std::sync::Arc;

use actix_web::test;
use cid::Cid;
use model::content::service::MockContentService;
use model::content::{ContentRecord, ImportOptions};
use model::stream_records::MockStreamMetrics;

use controllers::{AppState, Limits};

const HELLO: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

async fn call(content: MockContentService, limits: Limits, request: test::TestRequest) -> (u16, serde_json::Value) {
    let mut metrics = MockStreamMetrics::new();
    metrics.expect_record().return_const(());
    let state = AppState::new(Arc::new(content), Arc::new(metrics), hub()).with_limits(limits);
    let app = test::init_service(controllers::app(state, false)).await;
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

async fn call_monitoring(
    history: model::monitoring::MockMetricsHistory,
    faults: Option<Arc<model::faults::Faults>>,
    request: test::TestRequest,
) -> (u16, serde_json::Value) {
    let live = Arc::new(model::monitoring::LiveStats::default());
    let mut state = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        hub(),
    )
    .with_monitoring(
        live,
        Arc::new(history),
        Arc::new(std::sync::atomic::AtomicU64::new(3)),
        Default::default(),
    );
    if let Some(faults) = faults {
        state = state.with_faults(faults);
    }
    let app = test::init_service(controllers::app(state, false)).await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[actix_web::test]
async fn history_queries_reach_the_model_bounded_and_bad_ones_name_the_parameter() {
    use model::monitoring::{Instances, Metric, MockMetricsHistory, SeriesPoint};
    let mut history = MockMetricsHistory::new();
    history
        .expect_query_instances()
        .withf(|q, instances| {
            q.metric == Metric::LatencyP95
                && q.since_ms == 0
                && q.until_ms == 86_400_000
                && q.step_ms == 43_200
                && *instances == Instances::This
        })
        .times(1)
        .returning(|q, _| {
            Ok(vec![SeriesPoint {
                t: q.since_ms,
                value: 0.5,
                min: 0.1,
                max: 0.9,
            }])
        });
    let (status, body) = call_monitoring(
        history,
        None,
        test::TestRequest::get()
            .uri("/api/v1/metrics/history?metric=latency_p95_seconds&since=0&until=86400000&step=1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["step_ms"], 43_200, "a day at 1 s is widened to 2000 points");
    assert_eq!(body["points"][0]["max"], 0.9);
    for (asked, instances) in [("all", Instances::All), ("edge-2", Instances::Named("edge-2".into()))] {
        let mut history = MockMetricsHistory::new();
        history
            .expect_query_instances()
            .withf(move |_, whose| *whose == instances)
            .times(1)
            .returning(|_, _| Ok(Vec::new()));
        let uri = format!("/api/v1/metrics/history?metric=cpu_percent&instance={asked}");
        let (status, body) = call_monitoring(history, None, test::TestRequest::get().uri(&uri)).await;
        assert_eq!(status, 200, "{asked}: {body}");
    }
    for (query, field) in [
        ("metric=cpu_percent&instance=", "instance"),
        ("metric=nope", "metric"),
        ("metric=cpu_percent&step=0", "step"),
        ("metric=cpu_percent&step=x", "step"),
        ("metric=cpu_percent&since=10&until=5", "since"),
        ("metric=cpu_percent&since=-4", "since"),
        ("metric=cpu_percent&since=0&until=99999999999999", "since"),
        ("since=0", "metric"),
    ] {
        let (status, body) = call_monitoring(
            MockMetricsHistory::new(),
            None,
            test::TestRequest::get().uri(&format!("/api/v1/metrics/history?{query}")),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

#[actix_web::test]
async fn analytics_lists_anomalies_and_trends_from_the_model() {
    use model::monitoring::{Anomaly, MockMetricsHistory, SeriesPoint};
    let mut history = MockMetricsHistory::new();
    history
        .expect_anomalies()
        .withf(|_, limit| *limit == 5)
        .times(1)
        .returning(|_, _| {
            Ok(vec![Anomaly {
                at_ms: 7,
                metric: "error_rate".into(),
                value: 0.5,
                expected_low: 0.0,
                expected_high: 0.01,
                score: 1.0,
                detector: "relative_entropy".into(),
            }])
        });
    history.expect_query().returning(|q| {
        let value = if q.step_ms > 3_600_000 { 10.0 } else { 15.0 };
        Ok(vec![SeriesPoint {
            t: q.since_ms,
            value,
            min: 1.0,
            max: 20.0,
        }])
    });
    let (status, body) =
        call_monitoring(history, None, test::TestRequest::get().uri("/api/v1/analytics?limit=5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["anomalies"][0]["metric"], "error_rate");
    let trend = &body["trends"][0];
    assert_eq!(
        (trend["mean_1h"].as_f64(), trend["mean_5m"].as_f64()),
        (Some(10.0), Some(15.0))
    );
    assert_eq!(trend["change_percent"], 50.0);
    let (status, body) = call_monitoring(
        MockMetricsHistory::new(),
        None,
        test::TestRequest::get().uri("/api/v1/analytics?limit=0"),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("limit")));
}

#[actix_web::test]
async fn faults_are_refused_unless_allowed_and_validated() {
    use model::monitoring::MockMetricsHistory;
    let post = |body: serde_json::Value| test::TestRequest::post().uri("/api/v1/faults").set_json(body);
    let good = serde_json::json!({"store_latency_ms": 200, "duration_s": 5});
    let (status, body) = call_monitoring(MockMetricsHistory::new(), None, post(good.clone())).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("faults_disabled")));
    let faults = Arc::new(model::faults::Faults::default());
    let (status, body) = call_monitoring(MockMetricsHistory::new(), Some(faults.clone()), post(good)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(faults.active().unwrap().store_latency.as_millis(), 200);
    let (status, body) = call_monitoring(
        MockMetricsHistory::new(),
        Some(faults.clone()),
        post(serde_json::json!({"store_latency_ms": 0, "duration_s": 5})),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("store_latency_ms")));
    // Jitter with stalls: both halves of a stall needed, the stall shorter than its period.
    for (body, field) in [
        (
            serde_json::json!({"store_latency_ms": 0, "stall_every_s": 60, "duration_s": 5}),
            "stall_ms",
        ),
        (
            serde_json::json!({"store_latency_ms": 0, "stall_ms": 2000, "duration_s": 5}),
            "stall_every_s",
        ),
        (
            serde_json::json!({"store_latency_ms": 0, "stall_every_s": 1, "stall_ms": 2000, "duration_s": 5}),
            "stall_ms",
        ),
    ] {
        let (status, answer) = call_monitoring(MockMetricsHistory::new(), Some(faults.clone()), post(body)).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{answer}");
    }
    let stalling = serde_json::json!({"store_latency_ms": 0, "store_jitter_ms": 200, "stall_every_s": 60,
        "stall_ms": 2000, "duration_s": 600});
    let (status, body) = call_monitoring(MockMetricsHistory::new(), Some(faults.clone()), post(stalling)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (
            body["store_jitter_ms"].as_u64(),
            body["stall_every_s"].as_u64(),
            body["stall_ms"].as_u64()
        ),
        (Some(200), Some(60), Some(2000))
    );
    let active = faults.active().unwrap();
    assert_eq!(active.store_jitter.as_millis(), 200);
    assert_eq!(active.stalls.unwrap().length.as_millis(), 2000);
    let (status, _) = call_monitoring(
        MockMetricsHistory::new(),
        Some(faults.clone()),
        test::TestRequest::delete().uri("/api/v1/faults"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(faults.active().is_none());
}

#[actix_web::test]
async fn the_dashboard_and_its_assets_are_served_from_the_binary() {
    use model::monitoring::MockMetricsHistory;
    for (uri, status, kind) in [
        ("/dashboard", 200, "text/html"),
        ("/dashboard/assets/uPlot.iife.min.js", 200, "text/javascript"),
        ("/dashboard/assets/dashboard.js", 200, "text/javascript"),
        ("/dashboard/assets/nope.js", 404, "application/json"),
    ] {
        let live = Arc::new(model::monitoring::LiveStats::default());
        let state = AppState::new(
            Arc::new(MockContentService::new()),
            Arc::new(MockStreamMetrics::new()),
            hub(),
        )
        .with_monitoring(
            live,
            Arc::new(MockMetricsHistory::new()),
            Default::default(),
            Default::default(),
        );
        let app = test::init_service(controllers::app(state, false)).await;
        let response = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status().as_u16(), status, "{uri}");
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{uri}: {content_type}");
    }
}

#[actix_web::test]
async fn the_home_page_its_assets_and_the_asyncapi_document_are_served_from_the_binary() {
    let state = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        hub(),
    );
    let app = test::init_service(controllers::app(state, false)).await;
    for (uri, status, kind) in [
        ("/", 200, "text/html"),
        ("/home/assets/home.js", 200, "text/javascript"),
        ("/home/assets/auth.js", 200, "text/javascript"),
        ("/home/assets/nope.js", 404, "application/json"),
        ("/asyncapi.json", 200, "application/json"),
    ] {
        let response = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status().as_u16(), status, "{uri}");
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{uri}: {content_type}");
    }
}
