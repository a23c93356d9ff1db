//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use model::content::Page;
use serde::Serialize;

use crate::AppState;

/// Liveness of the process.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    #[schema(example = "0.1.0")]
    version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "Up", body = Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The process can serve content: its content repository answers.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "The content repository does not answer", body = crate::error::ErrorBody),
))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.content.records(Page { offset: 0, limit: 1 }).await {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": "not_ready", "message": e.to_string()}))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::{App, test};
    use model::content::service::MockContentService;

    use super::*;

    async fn call(content: MockContentService, path: &str) -> (u16, serde_json::Value) {
        let state = AppState::new(
            Arc::new(content),
            Arc::new(model::stream_records::MockStreamMetrics::new()),
            hub(),
        );
        let app = test::init_service(App::new().configure(|cfg| crate::configure(cfg, state))).await;
        let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let status = response.status().as_u16();
        (status, test::read_body_json(response).await)
    }

    fn hub() -> Arc<model::notifications::NotificationHub> {
        let repository = Arc::new(model::notifications::MemoryNotificationRepository::default());
        Arc::new(model::notifications::NotificationHub::start(repository, 1000))
    }

    #[actix_web::test]
    async fn health_is_ok_without_touching_the_model() {
        let (status, body) = call(MockContentService::new(), "/health").await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
    }

    #[actix_web::test]
    async fn ready_reflects_the_content_repository() {
        let mut up = MockContentService::new();
        up.expect_records().returning(|_| Ok((Vec::new(), 0)));
        assert_eq!(call(up, "/ready").await.0, 200);

        let mut down = MockContentService::new();
        down.expect_records()
            .returning(|_| Err(model::Error::Store("database is locked".into())));
        let (status, body) = call(down, "/ready").await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "not_ready");
    }
}
