//! `/api/v1/auth`: tickets for browsers, and who a credential is.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::caller_of;
use crate::{ApiError, AppState};

/// A single-use ticket.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ticket": "itk_4f1c...", "expires_in_secs": 30}))]
pub struct TicketBody {
    /// Pass as `?ticket=` on one WebSocket upgrade or EventSource request.
    pub ticket: String,
    pub expires_in_secs: u64,
}

/// Trades the bearer credential for a ticket with its scopes, good for one WebSocket upgrade or
/// EventSource request within 30 s (browsers cannot send headers on those).
#[utoipa::path(
    post,
    path = "/api/v1/auth/tickets",
    tag = "auth",
    responses(
        (status = 201, description = "A ticket", body = TicketBody),
        (status = 401, description = "No valid credential", body = crate::error::ErrorBody),
    ),
)]
pub async fn create_ticket(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = caller_of(&req);
    let ticket = state.access.tickets.issue(&caller).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(TicketBody {
            ticket,
            expires_in_secs: state.access.tickets.ttl().as_secs(),
        }))
}

/// Who a credential is.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "dashboard", "scopes": ["metrics:read", "notifications:read"], "credential": "token"}))]
pub struct WhoAmI {
    /// The token's name, or the JWT's subject.
    pub name: String,
    pub scopes: Vec<&'static str>,
    /// token, jwt, ticket, or auth_off.
    pub credential: &'static str,
}

/// The caller the request's credential proves, with its scopes.
#[utoipa::path(
    get,
    path = "/api/v1/auth/whoami",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "No valid credential", body = crate::error::ErrorBody),
    ),
)]
pub async fn whoami(req: HttpRequest) -> HttpResponse {
    use model::access::CredentialKind;
    let caller = caller_of(&req);
    HttpResponse::Ok().json(WhoAmI {
        scopes: caller.scopes.iter().map(|scope| scope.as_str()).collect(),
        credential: match caller.credential {
            CredentialKind::Token => "token",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Ticket => "ticket",
            CredentialKind::AuthOff => "auth_off",
        },
        name: caller.name,
    })
}
