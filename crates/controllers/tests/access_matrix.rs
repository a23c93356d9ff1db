//! Access control through the whole application (the guard in front of the route table): every
//! route of the table, for every kind of caller, gets the answer its access declares, and a
//! refused request runs nothing. Also cross-site requests, tickets, JWTs and rate limits.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, test, web};
use model::access::{IssuedToken, JwtKey, JwtVerifier, NewToken, Scope, Scopes, TokenService};
use model::content::service::MockContentService;
use model::content::{ContentNode, ContentService, MemoryBlockStore, MemoryContentRepository};
use model::notifications::{MemoryNotificationRepository, NotificationHub, NotificationType};
use model::stream_records::MockStreamMetrics;

use controllers::AppState;
use controllers::access::{Access, AccessControl, AccessSettings, AuthMode, Requirement};
use controllers::rate_limits::RateSettings;
use controllers::routes::{self, Route};

const CID: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
/// Codes of the guard's refusals: an answer with another code came from the route itself.
const REFUSALS: [&str; 4] = [
    "invalid_token",
    "insufficient_scope",
    "cross_origin_refused",
    "no_access_policy",
];

fn hub() -> Arc<NotificationHub> {
    Arc::new(NotificationHub::start(
        Arc::new(MemoryNotificationRepository::default()),
        100,
    ))
}

fn permissive_metrics() -> MockStreamMetrics {
    let mut metrics = MockStreamMetrics::new();
    metrics.expect_record().return_const(());
    metrics.expect_summary().returning(|_| Ok(Vec::new()));
    metrics.expect_history().returning(|_| Ok(Vec::new()));
    metrics.expect_dropped().return_const(0u64);
    metrics
}

fn settings(public: bool) -> AccessSettings {
    AccessSettings {
        mode: AuthMode::Tokens,
        public_read: public,
        public_playback: public,
        allowed_origins: vec!["https://app.example".into()],
        rates: RateSettings::unlimited(),
    }
}

/// A request path for a route's pattern.
fn path_of(route: &Route) -> String {
    let mut path = String::new();
    let mut rest = route.pattern;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed parameter") + start;
        let name = rest[start + 1..end].split(':').next().unwrap_or_default();
        path.push_str(match name {
            "cid" => CID,
            "path" => "a/b",
            "stream_id" => "stream-1",
            "pc_id" => "pc-1",
            "name" => "auth.js",
            "file" => "index.html",
            other => panic!("no sample value for {{{other}}}"),
        });
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    path
}

fn request(route: &Route, bearer: Option<&str>) -> test::TestRequest {
    let mut request = test::TestRequest::default()
        .method(route.method.clone())
        .uri(&path_of(route))
        .peer_addr("127.0.0.1:40000".parse().unwrap());
    if route.pattern.starts_with("/ws/") {
        request = request
            .insert_header(("Connection", "Upgrade"))
            .insert_header(("Upgrade", "websocket"))
            .insert_header(("Sec-WebSocket-Version", "13"))
            .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
    }
    if let Some(bearer) = bearer {
        request = request.insert_header(("Authorization", format!("Bearer {bearer}")));
    }
    request
}

/// The callers of the matrix.
struct Callers {
    tokens: Arc<TokenService>,
    expired: IssuedToken,
    revoked: IssuedToken,
    admin: IssuedToken,
    /// One token per scope.
    by_scope: Vec<(Scope, IssuedToken)>,
}

async fn callers() -> Callers {
    let tokens = Arc::new(TokenService::new(Arc::new(
        model::access::MemoryTokenRepository::default(),
    )));
    let make = |name: &str, scopes: &[Scope], ttl: Option<Duration>| {
        let tokens = tokens.clone();
        let new = NewToken {
            name: Some(name.to_owned()),
            scopes: Scopes::of(scopes),
            ttl,
        };
        async move { tokens.create(new).await.unwrap() }
    };
    let expired = make("expired", &[Scope::Admin], Some(Duration::from_millis(1))).await;
    let revoked = make("revoked", &[Scope::Admin], None).await;
    tokens.revoke("revoked").await.unwrap();
    let admin = make("admin", &[Scope::Admin], None).await;
    let mut by_scope = Vec::new();
    for scope in Scope::ALL.iter().filter(|scope| **scope != Scope::Admin) {
        by_scope.push((
            *scope,
            make(scope.as_str().replace(':', "-").as_str(), &[*scope], None).await,
        ));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    Callers {
        tokens,
        expired,
        revoked,
        admin,
        by_scope,
    }
}

impl Callers {
    fn with(&self, scope: Scope) -> &str {
        if scope == Scope::Admin {
            return &self.admin.bearer;
        }
        &self.by_scope.iter().find(|(held, _)| *held == scope).unwrap().1.bearer
    }

    /// A valid token that lacks `scope`.
    fn without(&self, scope: Scope) -> &str {
        let other = if scope == Scope::ContentRead {
            Scope::MetricsRead
        } else {
            Scope::ContentRead
        };
        self.with(other)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Allowed,
    Unauthorized,
    Forbidden,
}

async fn answer<S, B>(app: &S, request: test::TestRequest) -> (StatusCode, Option<String>)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let response = test::call_service(app, request.to_request()).await;
    let status = response.status();
    let body = test::read_body(response).await;
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned));
    (status, code)
}

fn check(route: &Route, caller: &str, expect: Expect, (status, code): (StatusCode, Option<String>)) {
    let what = format!("{} {} as {caller}: {status} {code:?}", route.method, route.pattern);
    match expect {
        Expect::Allowed => assert!(
            !code.as_deref().is_some_and(|code| REFUSALS.contains(&code)),
            "{what}: should pass the guard"
        ),
        Expect::Unauthorized => {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(code.as_deref(), Some("invalid_token"), "{what}");
        }
        Expect::Forbidden => {
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
            assert_eq!(code.as_deref(), Some("insufficient_scope"), "{what}");
        }
    }
}

/// Runs the matrix for one setting of public reads and playback: first every refusal against
/// services that fail the test if anything calls them, then every admitted caller against real
/// in-memory services.
async fn matrix(public: bool) {
    let callers = callers().await;
    let settings = settings(public);
    let refusal_hub = hub();
    let refusing = AppState::new(
        Arc::new(MockContentService::new()),
        Arc::new(MockStreamMetrics::new()),
        refusal_hub.clone(),
    )
    .with_access(AccessControl::new(settings.clone(), Some(callers.tokens.clone())));
    let app = test::init_service(controllers::app(refusing, false)).await;
    let mut refusals = 0;
    for route in routes::table() {
        let requirement = route.access.requirement(&settings);
        let mut cells: Vec<(&str, Option<&str>, Expect)> = vec![
            ("malformed", Some("not-a-token"), Expect::Unauthorized),
            ("expired", Some(&callers.expired.bearer), Expect::Unauthorized),
            ("revoked", Some(&callers.revoked.bearer), Expect::Unauthorized),
        ];
        if requirement != Requirement::Nothing {
            cells.push(("anonymous", None, Expect::Unauthorized));
        }
        if let Requirement::Scope(scope) = requirement {
            cells.push(("wrong scope", Some(callers.without(scope)), Expect::Forbidden));
        }
        for (caller, bearer, expect) in cells {
            refusals += 1;
            check(route, caller, expect, answer(&app, request(route, bearer)).await);
        }
    }
    assert!(refusals > 3 * routes::table().len());
    // Nothing ran: the mocks would have failed the test; and nothing was published but audits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let published = refusal_hub.history(None, None, 1000).await.unwrap();
    assert!(
        published.iter().all(|n| n.kind == NotificationType::SecurityAudit),
        "{published:?}"
    );
    assert!(
        published
            .iter()
            .map(|n| n.data.to_json())
            .any(|data| data["caller"] == "revoked" && data["outcome"] == "revoked")
    );

    let content: Arc<dyn ContentService> = Arc::new(ContentNode::new(
        Arc::new(MemoryBlockStore::new()),
        Arc::new(MemoryContentRepository::new()),
    ));
    let admitting = AppState::new(content, Arc::new(permissive_metrics()), hub())
        .with_access(AccessControl::new(settings.clone(), Some(callers.tokens.clone())));
    let app = test::init_service(controllers::app(admitting, false)).await;
    for route in routes::table() {
        let requirement = route.access.requirement(&settings);
        let right = match requirement {
            Requirement::Scope(scope) => callers.with(scope),
            Requirement::Nothing | Requirement::Credential => callers.with(Scope::ContentRead),
        };
        let mut cells = vec![
            ("right scope", Some(right)),
            ("admin", Some(callers.admin.bearer.as_str())),
        ];
        if requirement == Requirement::Nothing {
            cells.push(("anonymous", None));
        }
        for (caller, bearer) in cells {
            check(
                route,
                caller,
                Expect::Allowed,
                answer(&app, request(route, bearer)).await,
            );
        }
    }
}

#[actix_web::test]
async fn every_route_answers_every_caller_as_its_access_declares() {
    matrix(true).await;
}

#[actix_web::test]
async fn with_reads_and_playback_private_they_need_content_read() {
    matrix(false).await;
}

#[actix_web::test]
async fn the_openapi_document_states_each_operations_scope() {
    let doc = serde_json::to_value(controllers::openapi::document()).unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mut checked = 0;
    for route in routes::table().iter().filter(|route| route.documented()) {
        let operation = &doc["paths"][route.label][route.method.as_str().to_ascii_lowercase()];
        let expected = match route.access {
            Access::Public | Access::Read | Access::Play | Access::Session => serde_json::json!([]),
            Access::Authenticated => serde_json::json!([{"bearer": []}]),
            Access::Needs(scope) => serde_json::json!([{"bearer": [scope.as_str()]}]),
        };
        assert_eq!(operation["security"], expected, "{} {}", route.method, route.label);
        checked += 1;
    }
    assert!(checked > 40, "{checked}");
}

async fn guarded_app(
    settings: AccessSettings,
    tokens: Option<Arc<TokenService>>,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    let content: Arc<dyn ContentService> = Arc::new(ContentNode::new(
        Arc::new(MemoryBlockStore::new()),
        Arc::new(MemoryContentRepository::new()),
    ));
    let state =
        AppState::new(content, Arc::new(permissive_metrics()), hub()).with_access(AccessControl::new(settings, tokens));
    test::init_service(controllers::app(state, false)).await
}

fn upload(origin: Option<&str>) -> test::TestRequest {
    let mut request = test::TestRequest::post()
        .uri("/api/v1/content")
        .insert_header(("Host", "127.0.0.1:8080"))
        .insert_header(("Content-Type", "text/plain"))
        .set_payload("hello");
    if let Some(origin) = origin {
        request = request.insert_header(("Origin", origin));
    }
    request
}

#[actix_web::test]
async fn cross_site_requests_are_refused_before_any_work_with_auth_on_or_off() {
    let callers = callers().await;
    for mode in [AuthMode::Off, AuthMode::Tokens] {
        let app = guarded_app(AccessSettings { mode, ..settings(true) }, Some(callers.tokens.clone())).await;
        let admin = format!("Bearer {}", callers.admin.bearer);
        let (status, code) = answer(
            &app,
            upload(Some("http://evil.example")).insert_header(("Authorization", admin.as_str())),
        )
        .await;
        assert_eq!(
            (status, code.as_deref()),
            (StatusCode::FORBIDDEN, Some("cross_origin_refused")),
            "{mode:?}"
        );
        // A WebSocket upload from another site: refused before the upgrade.
        let route = routes::table().iter().find(|r| r.pattern == "/ws/upload").unwrap();
        let (status, code) = answer(
            &app,
            request(route, Some(&callers.admin.bearer)).insert_header(("Origin", "http://evil.example")),
        )
        .await;
        assert_eq!(
            (status, code.as_deref()),
            (StatusCode::FORBIDDEN, Some("cross_origin_refused")),
            "{mode:?}"
        );
        // The server's own origin and a listed one pass the origin check.
        for origin in ["http://127.0.0.1:8080", "https://app.example"] {
            let (_, code) = answer(
                &app,
                upload(Some(origin)).insert_header(("Authorization", admin.as_str())),
            )
            .await;
            assert_ne!(code.as_deref(), Some("cross_origin_refused"), "{mode:?} {origin}");
        }
        // Reads and playback stay open to every site.
        let response = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("/ipfs/{CID}"))
                .insert_header(("Origin", "http://evil.example"))
                .to_request(),
        )
        .await;
        assert_eq!(response.headers().get("access-control-allow-origin").unwrap(), "*");
        let route = routes::table()
            .iter()
            .find(|r| r.pattern == "/ws/stream/{cid:.*}")
            .unwrap();
        let (_, code) = answer(
            &app,
            request(route, None).insert_header(("Origin", "http://evil.example")),
        )
        .await;
        assert_ne!(code.as_deref(), Some("cross_origin_refused"));
        let (_, code) = answer(
            &app,
            test::TestRequest::post()
                .uri(&format!("/whep/{CID}"))
                .insert_header(("Origin", "http://evil.example"))
                .insert_header(("Content-Type", "application/sdp"))
                .set_payload("v=0"),
        )
        .await;
        assert_ne!(code.as_deref(), Some("cross_origin_refused"));
    }
}

#[actix_web::test]
async fn api_preflights_succeed_only_for_allowed_origins_and_pages_carry_a_policy() {
    let app = guarded_app(settings(true), None).await;
    let preflight = |origin: &'static str, path: &'static str| {
        test::TestRequest::default()
            .method(Method::OPTIONS)
            .uri(path)
            .insert_header(("Host", "127.0.0.1:8080"))
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .insert_header(("Access-Control-Request-Headers", "authorization, content-type"))
            .to_request()
    };
    let refused = test::call_service(&app, preflight("http://evil.example", "/api/v1/content")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let allowed = test::call_service(&app, preflight("https://app.example", "/api/v1/content")).await;
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example"
    );
    assert_eq!(
        allowed.headers().get("access-control-allow-headers").unwrap(),
        "authorization, content-type"
    );
    // Playback: every origin.
    let open = test::call_service(&app, preflight("http://evil.example", "/api/v1/webrtc/streams")).await;
    assert_eq!(
        open.status(),
        StatusCode::FORBIDDEN,
        "creating a stream is not playback"
    );
    let page = test::call_service(&app, test::TestRequest::get().uri("/dashboard").to_request()).await;
    let policy = page.headers().get("content-security-policy").unwrap().to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert_eq!(page.headers().get("x-content-type-options").unwrap(), "nosniff");
}

#[actix_web::test]
async fn a_route_outside_the_table_is_refused_even_to_admin() {
    let callers = callers().await;
    let content: Arc<dyn ContentService> = Arc::new(ContentNode::new(
        Arc::new(MemoryBlockStore::new()),
        Arc::new(MemoryContentRepository::new()),
    ));
    let state = AppState::new(content, Arc::new(permissive_metrics()), hub())
        .with_access(AccessControl::new(settings(true), Some(callers.tokens.clone())));
    let app = test::init_service(
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(controllers::access_guard::guard))
            .service(web::resource("/undeclared").to(|| async { HttpResponse::Ok().body("ran") }))
            .configure(|cfg| controllers::configure(cfg, state)),
    )
    .await;
    let (status, code) = answer(
        &app,
        test::TestRequest::get()
            .uri("/undeclared")
            .insert_header(("Authorization", format!("Bearer {}", callers.admin.bearer))),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::FORBIDDEN, Some("no_access_policy"))
    );
}

fn websocket(path: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(path)
        .insert_header(("Connection", "Upgrade"))
        .insert_header(("Upgrade", "websocket"))
        .insert_header(("Sec-WebSocket-Version", "13"))
        .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
}

#[actix_web::test]
async fn a_ticket_opens_one_websocket_with_its_tokens_scopes() {
    let callers = callers().await;
    let app = guarded_app(settings(true), Some(callers.tokens.clone())).await;
    let ticket = |bearer: String| {
        let app = &app;
        async move {
            let response = test::call_service(
                app,
                test::TestRequest::post()
                    .uri("/api/v1/auth/tickets")
                    .insert_header(("Authorization", format!("Bearer {bearer}")))
                    .to_request(),
            )
            .await;
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["expires_in_secs"], 30);
            body["ticket"].as_str().unwrap().to_owned()
        }
    };
    let reader = ticket(callers.with(Scope::NotificationsRead).to_owned()).await;
    let path = format!("/ws/notifications?ticket={reader}");
    let first = test::call_service(&app, websocket(&path).to_request()).await;
    assert_eq!(first.status(), StatusCode::SWITCHING_PROTOCOLS);
    let (status, _) = answer(&app, websocket(&path)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a ticket is good once");
    // A ticket carries its token's scopes, no more.
    let metrics_only = ticket(callers.with(Scope::MetricsRead).to_owned()).await;
    let (status, code) = answer(&app, websocket(&format!("/ws/notifications?ticket={metrics_only}"))).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    // Without a token, no ticket.
    let (status, _) = answer(&app, test::TestRequest::post().uri("/api/v1/auth/tickets")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn refusals_say_what_is_wrong_as_rfc_6750_asks() {
    let callers = callers().await;
    let app = guarded_app(settings(true), Some(callers.tokens.clone())).await;
    let close_all = |bearer: Option<&str>| {
        let mut request = test::TestRequest::post().uri("/api/v1/webrtc/connections/close-all");
        if let Some(bearer) = bearer {
            request = request.insert_header(("Authorization", format!("Bearer {bearer}")));
        }
        request.to_request()
    };
    let response = test::call_service(&app, close_all(None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    let body: serde_json::Value = test::read_body_json(response).await;
    assert!(body["message"].as_str().unwrap().contains("no credential"), "{body}");

    let response = test::call_service(&app, close_all(Some(callers.with(Scope::StreamsWrite)))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"streams:admin\""));
    let body: serde_json::Value = test::read_body_json(response).await;
    assert!(body["message"].as_str().unwrap().contains("streams:admin"), "{body}");

    for (bearer, problem) in [
        (callers.revoked.bearer.as_str(), "revoked"),
        (callers.expired.bearer.as_str(), "expired"),
        (
            "ist_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "unknown",
        ),
        ("ist_short", "malformed"),
    ] {
        let response = test::call_service(&app, close_all(Some(bearer))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert!(body["message"].as_str().unwrap().contains(problem), "{problem}: {body}");
    }
    // The refusals are counted by route and reason.
    let metrics = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/metrics")
            .insert_header(("Authorization", format!("Bearer {}", callers.with(Scope::MetricsRead))))
            .to_request(),
    )
    .await;
    let text = String::from_utf8(test::read_body(metrics).await.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"ipfs_stream_access_denied_total{reason="revoked",route="/api/v1/webrtc/connections/close-all"} 1"#
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn an_identity_providers_jwt_is_accepted_like_a_token() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let secret = b"the identity provider's secret, 32 bytes or more".to_vec();
    let tokens = TokenService::new(Arc::new(model::access::MemoryTokenRepository::default()))
        .with_jwt(JwtVerifier::new(JwtKey::Hs256Secret(secret.clone()), "ipfs-stream").unwrap());
    let app = guarded_app(settings(true), Some(Arc::new(tokens))).await;
    let exp = model::clock::now_ms() / 1000 + 600;
    let sign = |aud: &str| {
        let claims = serde_json::json!({"sub": "carol", "aud": aud, "exp": exp, "scope": "metrics:read"});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&secret),
        )
        .unwrap()
    };
    let whoami = |jwt: String| {
        test::TestRequest::get()
            .uri("/api/v1/auth/whoami")
            .insert_header(("Authorization", format!("Bearer {jwt}")))
    };
    let response = test::call_service(&app, whoami(sign("ipfs-stream")).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        serde_json::json!({"name": "carol", "scopes": ["metrics:read"], "credential": "jwt"})
    );
    let (status, _) = answer(&app, whoami(sign("someone-else"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_flooding_client_gets_429_with_retry_after_and_recovers() {
    let callers = callers().await;
    let app = guarded_app(
        AccessSettings {
            rates: RateSettings {
                per_token: 100,
                anonymous: 2,
                burst: 2,
                sessions_per_minute: 0,
            },
            ..settings(true)
        },
        Some(callers.tokens.clone()),
    )
    .await;
    let health = || {
        test::TestRequest::get()
            .uri("/health")
            .peer_addr("10.0.0.7:5000".parse().unwrap())
    };
    for _ in 0..2 {
        assert_eq!(
            test::call_service(&app, health().to_request()).await.status(),
            StatusCode::OK
        );
    }
    let asked = std::time::Instant::now();
    let limited = test::call_service(&app, health().to_request()).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    // The refusal came after the wait it names: a flooding client slows down.
    assert!(asked.elapsed() >= Duration::from_millis(200), "{:?}", asked.elapsed());
    // A client with a token, from the same address, has buckets of its own.
    let tokened = health().insert_header(("Authorization", format!("Bearer {}", callers.admin.bearer)));
    assert_eq!(
        test::call_service(&app, tokened.to_request()).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        test::call_service(&app, health().to_request()).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn an_address_guessing_tokens_is_refused_unread() {
    let callers = callers().await;
    let app = guarded_app(
        AccessSettings {
            rates: RateSettings::default(),
            ..settings(true)
        },
        Some(callers.tokens.clone()),
    )
    .await;
    let guess = |n: u32| {
        test::TestRequest::get()
            .uri("/api/v1/auth/whoami")
            .peer_addr("10.0.0.8:5000".parse().unwrap())
            .insert_header(("Authorization", format!("Bearer ist_{n:016x}_{}", "0".repeat(64))))
    };
    for n in 0..51 {
        assert_eq!(answer(&app, guess(n)).await.0, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    assert_eq!(answer(&app, guess(51)).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not held back.
    let (status, _) = answer(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/auth/whoami")
            .peer_addr("10.0.0.9:5000".parse().unwrap())
            .insert_header(("Authorization", format!("Bearer {}", callers.admin.bearer))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
