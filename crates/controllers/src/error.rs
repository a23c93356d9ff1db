//! The one mapping of errors to HTTP: a status and a JSON body `{"error", "message", "field"?}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_cid`, `not_found`, ...).
    pub code: &'static str,
    pub message: String,
    /// The request field (query parameter, header, body part) at fault, when there is one.
    pub field: Option<String>,
}

/// The JSON body of every error reply.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "invalid_parameter", "message": "cid_version: must be 0 or 1", "field": "cid_version"}))]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_parameter(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        HttpResponse::build(self.status).json(ErrorBody {
            error: self.code.to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        })
    }
}

impl From<model::Error> for ApiError {
    fn from(e: model::Error) -> Self {
        use model::Error as E;
        let message = e.to_string();
        let (status, code) = match &e {
            E::InvalidCid { .. } => (StatusCode::BAD_REQUEST, "invalid_cid"),
            E::UnsupportedCodec { .. } => (StatusCode::BAD_REQUEST, "unsupported_codec"),
            E::UnsupportedHash { .. } => (StatusCode::BAD_REQUEST, "unsupported_hash"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::NoSuchPath { .. } => (StatusCode::NOT_FOUND, "no_such_path"),
            E::WrongKind { .. } => (StatusCode::BAD_REQUEST, "wrong_kind"),
            E::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            E::InvalidOption { option, .. } => {
                return Self::bad_parameter(option, message);
            }
            E::InvalidCar(_) => (StatusCode::BAD_REQUEST, "invalid_car"),
            E::IncompleteDag { .. } => (StatusCode::BAD_REQUEST, "incomplete_dag"),
            E::Input(_) => (StatusCode::BAD_REQUEST, "input_failed"),
            E::InputStalled(_) => (StatusCode::REQUEST_TIMEOUT, "input_stalled"),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            E::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
            E::HashMismatch(_) => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted_block"),
            E::MalformedBlock { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "malformed_block"),
            E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            E::Unreachable { .. } => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            E::StorageFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            E::Task { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            E::Media(model::media::MediaError::Unsupported(_)) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media")
            }
            E::Media(model::media::MediaError::Invalid(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_media"),
            E::UnknownId { .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::LimitReached(_) => (StatusCode::TOO_MANY_REQUESTS, "limit_reached"),
            E::AtCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, "at_capacity"),
            E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            E::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
        };
        Self::new(status, code, message)
    }
}

/// Every failed rule as (`path`, reasons), nested structs and lists included (`ice_servers[0].urls`).
fn flatten(errors: &validator::ValidationErrors, prefix: &str, out: &mut Vec<(String, String)>) {
    use validator::ValidationErrorsKind as Kind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            Kind::Field(errs) => {
                let reasons: Vec<String> = errs
                    .iter()
                    .map(|e| {
                        e.message
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| e.code.to_string())
                    })
                    .collect();
                out.push((path, reasons.join(", ")));
            }
            Kind::Struct(inner) => flatten(inner, &path, out),
            Kind::List(items) => {
                for (index, inner) in items {
                    flatten(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut fields = Vec::new();
        flatten(&errors, "", &mut fields);
        fields.sort();
        let message = fields
            .iter()
            .map(|(f, r)| format!("{f}: {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            field: Some(fields.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(",")),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }
}

/// JSON 404 for any path no route matches.
pub async fn unknown_route(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// JSON 405 for a known path asked with a method it does not take.
/// 405 with the `Allow` header RFC 9110 asks for: the methods the route serves.
pub fn method_not_allowed(req: &actix_web::HttpRequest, allow: &str) -> HttpResponse {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {} (allowed: {allow})", req.method(), req.path()),
    )
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}
