//! The middleware in front of every route: it finds the route's access in the table, answers
//! CORS preflights, refuses cross-site requests the route does not accept, authenticates the
//! caller (bearer token, JWT or ticket), checks its scope and its rate, and only then lets the
//! request through. Nothing of a refused request reaches a handler.

use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use model::access::{Caller, Refusal};

use crate::access::{Access, AuthMode, PatternPolicy, Requirement, audit, policy_of};
use crate::rate_limits::RateKey;
use crate::{ApiError, AppState};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // Not routed yet: the pattern the request will match, from the app's resource map.
    let Some(pattern) = req.match_pattern() else {
        // No route at all: the JSON 404 of the default service.
        return Ok(with_common_headers(next.call(req).await?).map_into_left_body());
    };
    let Some(policy) = policy_of(&pattern) else {
        // Registered outside the route table: no access declared, so nobody gets in.
        return Ok(refuse(
            req,
            &state,
            &pattern,
            "no_policy",
            ApiError::new(
                StatusCode::FORBIDDEN,
                "no_access_policy",
                format!("{pattern} declares no access in the route table"),
            ),
        )
        .map_into_right_body());
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .map(str::to_owned);
    if *req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && policy.access(&Method::OPTIONS).is_none()
    {
        return Ok(preflight(req, &state, policy, origin.as_deref()).map_into_right_body());
    }
    let Some(access) = policy.access(req.method()) else {
        // A method the route does not serve: its resource answers 405.
        return Ok(with_common_headers(next.call(req).await?).map_into_left_body());
    };
    let control = &state.access;
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|upgrade| upgrade.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let changes_state = upgrade || !matches!(*req.method(), Method::GET | Method::HEAD);
    if !access.open_to_every_origin()
        && changes_state
        && let Some(origin) = &origin
        && !control.origin_allowed(origin, Some(req.connection_info().host()))
    {
        let message = format!("requests from {origin} are refused: not this server's origin nor in allowed_origins");
        return Ok(refuse(
            req,
            &state,
            policy.label,
            "origin",
            ApiError::new(StatusCode::FORBIDDEN, "cross_origin_refused", message),
        )
        .map_into_right_body());
    }

    let requirement = access.requirement(&control.settings);
    let address = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
    if control.settings.mode == AuthMode::Tokens
        && let Err(wait) = control.rate_limits.credentials_allowed(address)
    {
        control.rate_limits.hold().await;
        return Ok(too_many(req, &state, policy.label, wait).map_into_right_body());
    }
    let caller = match control.settings.mode {
        AuthMode::Off => Some(Caller::unauthenticated()),
        AuthMode::Tokens => match authenticate(&req, &state, upgrade).await {
            Ok(None) if requirement == Requirement::Nothing => None,
            Ok(None) => {
                return Ok(unauthorized(req, &state, policy.label, Refusal::Missing, None).map_into_right_body());
            }
            Ok(Some(Ok(caller))) => Some(caller),
            Ok(Some(Err((refusal, name)))) => {
                control.rate_limits.credential_refused(address);
                return Ok(unauthorized(req, &state, policy.label, refusal, name).map_into_right_body());
            }
            Err(error) => {
                let message = format!("credentials cannot be checked: {error}");
                return Ok(refuse(
                    req,
                    &state,
                    policy.label,
                    "unavailable",
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable", message),
                )
                .map_into_right_body());
            }
        },
    };
    if let Requirement::Scope(scope) = requirement
        && !caller.as_ref().is_some_and(|caller| caller.may(scope))
    {
        let Some(caller) = caller else {
            return Ok(unauthorized(req, &state, policy.label, Refusal::Missing, None).map_into_right_body());
        };
        audit(
            &*state.notifier,
            "access_denied",
            &caller.name,
            policy.label,
            "insufficient_scope",
        );
        let mut response = refuse(
            req,
            &state,
            policy.label,
            "insufficient_scope",
            ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this route needs the scope {scope} (or admin)"),
            ),
        );
        response.response_mut().headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header_value(&format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")),
        );
        return Ok(response.map_into_right_body());
    }

    let key = match &caller {
        Some(caller) if !caller.key.is_empty() => RateKey::Caller(&caller.key),
        _ => RateKey::Address(address),
    };
    if let Err(wait) = control.rate_limits.check(key, access == Access::Session) {
        control.rate_limits.hold().await;
        return Ok(too_many(req, &state, policy.label, wait).map_into_right_body());
    }

    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if access.open_to_every_origin() {
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    } else if let Some(origin) = origin
        && control.origin_allowed(&origin, None)
    {
        // A listed origin reads the answer; the server's own needs no CORS.
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header_value(&origin));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(with_common_headers(response).map_into_left_body())
}

/// The caller a request's credential proves: `None` without one; the inner error is the
/// refusal (and the token's name, when one was named); the outer, the store's failure.
async fn authenticate(
    req: &ServiceRequest,
    state: &AppState,
    upgrade: bool,
) -> model::Result<Option<Result<Caller, (Refusal, Option<String>)>>> {
    if let Some(authorization) = req.headers().get(header::AUTHORIZATION) {
        let bearer = authorization
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(bearer) = bearer else {
            return Ok(Some(Err((
                Refusal::Malformed("the Authorization header must be Bearer <token>".into()),
                None,
            ))));
        };
        let Some(tokens) = &state.access.tokens else {
            return Ok(Some(Err((Refusal::Unknown, None))));
        };
        return Ok(Some(match tokens.authenticate(bearer).await? {
            Ok(caller) => Ok(caller),
            Err(refusal) => Err((refusal, tokens.holder(bearer).await)),
        }));
    }
    // Browsers cannot put a header on a WebSocket upgrade or an EventSource: a ticket instead.
    let event_stream = req
        .headers()
        .get(header::ACCEPT)
        .is_some_and(|accept| accept.as_bytes().starts_with(b"text/event-stream"));
    if (upgrade || event_stream)
        && let Some(ticket) = req
            .query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("ticket="))
    {
        return Ok(Some(
            state
                .access
                .tickets
                .redeem(ticket)
                .await?
                .map_err(|refusal| (refusal, None)),
        ));
    }
    Ok(None)
}

/// 429 with `Retry-After` in whole seconds.
fn too_many(req: ServiceRequest, state: &AppState, label: &'static str, wait: std::time::Duration) -> ServiceResponse {
    state.prometheus_metrics.rate_limited(label);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = req.into_response(
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests: retry in {seconds} s"),
        )
        .error_response(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header_value(&seconds.to_string()));
    with_common_headers(response)
}

/// 401 with RFC 6750's `WWW-Authenticate` and the problem named in the body. A credential that
/// was known (revoked, expired, signed for another audience) is audited.
fn unauthorized(
    req: ServiceRequest,
    state: &AppState,
    label: &'static str,
    refusal: Refusal,
    name: Option<String>,
) -> ServiceResponse {
    if matches!(
        refusal,
        Refusal::Revoked | Refusal::Expired | Refusal::BadSignature | Refusal::WrongAudience
    ) {
        let caller = name.unwrap_or_else(|| "unknown".into());
        audit(&*state.notifier, "access_denied", &caller, label, refusal.reason());
    }
    let description = refusal.to_string().replace('"', "'");
    let mut response = refuse(
        req,
        state,
        label,
        refusal.reason(),
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", refusal.to_string()),
    );
    response.response_mut().headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header_value(&format!(
            "Bearer realm=\"ipfs-stream\", error=\"invalid_token\", error_description=\"{description}\""
        )),
    );
    response
}

/// Answers a request with `error` without running it, and counts the refusal.
fn refuse(
    req: ServiceRequest,
    state: &AppState,
    label: &str,
    reason: &'static str,
    error: ApiError,
) -> ServiceResponse {
    state.prometheus_metrics.access_denied(label, reason);
    tracing::debug!(route = label, reason, "request refused");
    with_common_headers(req.into_response(error.error_response()))
}

/// A CORS preflight: reads and playback answer every origin, the rest only the server's own and
/// `allowed_origins`.
fn preflight(req: ServiceRequest, state: &AppState, policy: &PatternPolicy, origin: Option<&str>) -> ServiceResponse {
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|method| method.to_str().ok())
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok());
    let access = asked.as_ref().and_then(|method| policy.access(method));
    let allow_origin = match (access, origin) {
        (Some(access), _) if access.open_to_every_origin() => Some("*".to_owned()),
        (Some(_), Some(origin)) if state.access.origin_allowed(origin, Some(req.connection_info().host())) => {
            Some(origin.to_owned())
        }
        _ => None,
    };
    let Some(allow_origin) = allow_origin else {
        let message = format!(
            "{} is not allowed cross-site from {}",
            asked.map_or_else(|| "this method".to_owned(), |method| method.to_string()),
            origin.unwrap_or("an unnamed origin")
        );
        return refuse(
            req,
            state,
            policy.label,
            "origin",
            ApiError::new(StatusCode::FORBIDDEN, "cross_origin_refused", message),
        );
    };
    let mut response = HttpResponse::NoContent();
    response
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, policy.allow.as_str()))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
        .insert_header((header::VARY, "Origin"));
    if let Some(headers) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, headers.clone()));
    }
    with_common_headers(req.into_response(response.finish()))
}

/// Headers every answer carries: browsers must not guess a type other than the one given.
fn with_common_headers<B>(mut response: ServiceResponse<B>) -> ServiceResponse<B> {
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
