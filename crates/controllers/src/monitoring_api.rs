//! What operators watch: sampled series over time, the content being streamed now, recent
//! anomalies and trends, and (when allowed) fault injection.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use model::clock::now_ms;
use model::monitoring::{ActiveContent, Anomaly, Instances, Metric, SeriesPoint, SeriesQuery};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;

/// Longest range one query may span: 400 days.
const MAX_SPAN_MS: i64 = 400 * 86_400_000;

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// The series (required), one of `GET /api/v1/metrics/series`.
    #[param(required = true)]
    pub metric: Option<String>,
    /// From this time, in milliseconds since the Unix epoch (default: 5 minutes before `until`).
    #[validate(range(min = 0, message = "must be a time in milliseconds since the epoch"))]
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Until this time, exclusive (default: now).
    #[validate(range(min = 0, message = "must be a time in milliseconds since the epoch"))]
    #[param(minimum = 0)]
    pub until: Option<i64>,
    /// Seconds per point, 1 to 86400 (default 1). Widened when the range would give more than 2000 points.
    #[validate(range(min = 1, max = 86400, message = "must be between 1 and 86400 seconds"))]
    #[param(minimum = 1, maximum = 86400)]
    pub step: Option<i64>,
    /// Where instances share a database: `all` for the whole service (amounts and rates added
    /// up, ratios and percentiles averaged), or an instance's name (one of
    /// `GET /api/v1/metrics/instances`). Default: the instance answering.
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[param(min_length = 1, max_length = 200)]
    pub instance: Option<String>,
}

/// A series over a range: the mean of each step, with its extremes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SeriesBody {
    pub metric: &'static str,
    pub since: i64,
    pub until: i64,
    /// Milliseconds per point actually used.
    pub step_ms: i64,
    #[schema(value_type = Vec<Object>)]
    pub points: Vec<SeriesPoint>,
}

fn metric_names() -> String {
    Metric::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
}

/// A sampled series over a range, averaged into steps (at most 2000 points).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/history",
    tag = "monitoring",
    params(SeriesParams),
    responses(
        (status = 200, description = "The series", body = SeriesBody),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ),
)]
pub async fn history(params: Checked<SeriesParams>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = params
        .metric
        .as_deref()
        .ok_or_else(|| ApiError::bad_parameter("metric", format!("metric: required; one of {}", metric_names())))?;
    let metric = Metric::parse(name).ok_or_else(|| {
        ApiError::bad_parameter(
            "metric",
            format!("metric: {name:?} is not a series; known: {}", metric_names()),
        )
    })?;
    let until = params.until.unwrap_or_else(now_ms);
    let since = params.since.unwrap_or(until - 300_000);
    if since >= until {
        return Err(ApiError::bad_parameter("since", "since: must be before until"));
    }
    if until - since > MAX_SPAN_MS {
        return Err(ApiError::bad_parameter(
            "since",
            "since: the range may span at most 400 days",
        ));
    }
    let query = SeriesQuery::bounded(metric, since, until, params.step.map(|s| s * 1000));
    let instances = match params.instance.as_deref() {
        None => Instances::This,
        Some("all") => Instances::All,
        Some(name) => Instances::Named(name.to_owned()),
    };
    let points = state.history.query_instances(query, instances).await?;
    Ok(HttpResponse::Ok().json(SeriesBody {
        metric: metric.as_str(),
        since,
        until,
        step_ms: query.step_ms,
        points,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub name: &'static str,
    pub description: &'static str,
}

/// The sampled series and what each measures.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/series",
    tag = "monitoring",
    responses((status = 200, description = "Series names", body = Vec<SeriesInfo>)),
)]
pub async fn series() -> HttpResponse {
    let list: Vec<SeriesInfo> = Metric::ALL
        .iter()
        .map(|m| SeriesInfo {
            name: m.as_str(),
            description: m.describe(),
        })
        .collect();
    HttpResponse::Ok().json(list)
}

/// The instances with sampled series.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InstancesBody {
    /// Names, for `?instance=` of the history; empty on a server of its own.
    pub instances: Vec<String>,
}

/// The instances sharing this server's database that have sampled series.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/instances",
    tag = "monitoring",
    responses((status = 200, description = "Instance names", body = InstancesBody)),
)]
pub async fn instances(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(InstancesBody {
        instances: state.history.instances().await?,
    }))
}

/// Content being streamed now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActiveContentBody {
    /// One entry per content and stream type, most viewers first.
    #[schema(value_type = Vec<Object>)]
    pub active: Vec<ActiveContent>,
    pub viewers: u64,
}

/// Content being streamed now: CID, stream type, bitrate (bits/s), viewers, started_at_ms.
#[utoipa::path(
    get,
    path = "/api/v1/content/active",
    tag = "monitoring",
    responses((status = 200, description = "Active content", body = ActiveContentBody)),
)]
pub async fn active_content(state: web::Data<AppState>) -> HttpResponse {
    let active = state.live.active_content();
    let viewers = active.iter().map(|a| a.viewers).sum();
    HttpResponse::Ok().json(ActiveContentBody { active, viewers })
}

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// Anomalies from this time, in milliseconds since the epoch (default: the last 24 hours).
    #[validate(range(min = 0, message = "must be a time in milliseconds since the epoch"))]
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Anomalies at most, 1 to 1000 (default 50).
    #[validate(range(min = 1, max = 1000, message = "must be between 1 and 1000"))]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// How a series moves: its last five minutes against its last hour.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Trend {
    pub metric: &'static str,
    pub mean_5m: Option<f64>,
    pub mean_1h: Option<f64>,
    pub max_1h: Option<f64>,
    /// (mean_5m − mean_1h) / mean_1h, in percent; absent when the hour's mean is 0.
    pub change_percent: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AnalyticsBody {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub anomalies: Vec<Anomaly>,
    pub trends: Vec<Trend>,
}

/// Recent anomalies and the trend of every series.
#[utoipa::path(
    get,
    path = "/api/v1/analytics",
    tag = "monitoring",
    params(AnalyticsParams),
    responses(
        (status = 200, description = "Anomalies and trends", body = AnalyticsBody),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ),
)]
pub async fn analytics(params: Checked<AnalyticsParams>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let anomalies = state
        .history
        .anomalies(params.since.unwrap_or(now - 86_400_000), params.limit.unwrap_or(50))
        .await?;
    let mut trends = Vec::new();
    for &metric in Metric::ALL {
        let over = |span: i64| SeriesQuery::bounded(metric, now - span, now + 1, Some(span + 1));
        let hour = state.history.query(over(3_600_000)).await?.first().copied();
        let recent = state.history.query(over(300_000)).await?.first().copied();
        let mean_1h = hour.map(|p| p.value);
        let mean_5m = recent.map(|p| p.value);
        trends.push(Trend {
            metric: metric.as_str(),
            mean_5m,
            mean_1h,
            max_1h: hour.map(|p| p.max),
            change_percent: match (mean_5m, mean_1h) {
                (Some(recent), Some(hour)) if hour != 0.0 => Some((recent - hour) / hour * 100.0),
                _ => None,
            },
        });
    }
    Ok(HttpResponse::Ok().json(AnalyticsBody { anomalies, trends }))
}

/// A fault to inject.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Latency added to every content read, 0 to 10000 ms.
    #[validate(range(min = 0, max = 10000, message = "must be between 0 and 10000 ms"))]
    #[schema(minimum = 0, maximum = 10000)]
    pub store_latency_ms: u64,
    /// Up to this much more per read, drawn at random, 0 to 10000 ms.
    #[validate(range(min = 0, max = 10000, message = "must be between 0 and 10000 ms"))]
    #[schema(minimum = 0, maximum = 10000)]
    pub store_jitter_ms: Option<u64>,
    /// A stall every this many seconds (1 to 600), with `stall_ms`.
    #[validate(range(min = 1, max = 600, message = "must be between 1 and 600 seconds"))]
    #[schema(minimum = 1, maximum = 600)]
    pub stall_every_s: Option<u64>,
    /// How long each stall holds reads, 1 to 60000 ms (less than `stall_every_s`).
    #[validate(range(min = 1, max = 60000, message = "must be between 1 and 60000 ms"))]
    #[schema(minimum = 1, maximum = 60000)]
    pub stall_ms: Option<u64>,
    /// How long the fault lasts, 1 to 600 s.
    #[validate(range(min = 1, max = 600, message = "must be between 1 and 600 seconds"))]
    #[schema(minimum = 1, maximum = 600)]
    pub duration_s: u64,
}

impl FaultRequest {
    fn fault(&self) -> Result<model::faults::StoreFault, ApiError> {
        let stalls = match (self.stall_every_s, self.stall_ms) {
            (None, None) => None,
            (Some(every), Some(length)) if length < every * 1000 => Some(model::faults::Stalls {
                every: Duration::from_secs(every),
                length: Duration::from_millis(length),
            }),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_parameter(
                    "stall_ms",
                    "stall_ms: must be shorter than stall_every_s",
                ));
            }
            (Some(_), None) => {
                return Err(ApiError::bad_parameter(
                    "stall_ms",
                    "stall_ms: is needed with stall_every_s",
                ));
            }
            (None, Some(_)) => {
                return Err(ApiError::bad_parameter(
                    "stall_every_s",
                    "stall_every_s: is needed with stall_ms",
                ));
            }
        };
        let fault = model::faults::StoreFault {
            latency: Duration::from_millis(self.store_latency_ms),
            jitter: Duration::from_millis(self.store_jitter_ms.unwrap_or(0)),
            stalls,
        };
        if fault == model::faults::StoreFault::default() {
            return Err(ApiError::bad_parameter(
                "store_latency_ms",
                "store_latency_ms: the fault does nothing; give a latency, a jitter or stalls",
            ));
        }
        Ok(fault)
    }
}

/// The fault in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FaultBody {
    pub store_latency_ms: Option<u64>,
    pub store_jitter_ms: Option<u64>,
    pub stall_every_s: Option<u64>,
    pub stall_ms: Option<u64>,
    pub remaining_ms: Option<u64>,
}

fn allowed(state: &AppState) -> Result<&model::faults::Faults, ApiError> {
    state.faults.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "faults_disabled",
            "fault injection is off; start the server with --allow-fault-injection",
        )
    })
}

fn fault_body(faults: &model::faults::Faults) -> FaultBody {
    let active = faults.active();
    FaultBody {
        store_latency_ms: active.map(|f| f.store_latency.as_millis() as u64),
        store_jitter_ms: active.map(|f| f.store_jitter.as_millis() as u64),
        stall_every_s: active.and_then(|f| f.stalls).map(|s| s.every.as_secs()),
        stall_ms: active.and_then(|f| f.stalls).map(|s| s.length.as_millis() as u64),
        remaining_ms: active.map(|f| f.remaining.as_millis() as u64),
    }
}

/// The fault in force, if any.
#[utoipa::path(
    get,
    path = "/api/v1/faults",
    tag = "monitoring",
    responses(
        (status = 200, description = "The fault in force", body = FaultBody),
        (status = 403, description = "Fault injection is off", body = crate::error::ErrorBody),
    ),
)]
pub async fn faults(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(fault_body(allowed(&state)?)))
}

/// Slows store reads for a while: latency, random jitter on top, stalls now and then (servers
/// started with `--allow-fault-injection` only).
#[utoipa::path(
    post,
    path = "/api/v1/faults",
    tag = "monitoring",
    request_body = FaultRequest,
    responses(
        (status = 202, description = "In force", body = FaultBody),
        (status = 400, description = "A bad field", body = crate::error::ErrorBody),
        (status = 403, description = "Fault injection is off", body = crate::error::ErrorBody),
    ),
)]
pub async fn inject_fault(
    req: actix_web::HttpRequest,
    body: crate::extract::Json<FaultRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let faults = allowed(&state)?;
    body.validate()?;
    let fault = body.fault()?;
    let caller = crate::access::caller_of(&req);
    let target = format!(
        "store latency {} ms, jitter {} ms, stalls {:?} for {} s",
        body.store_latency_ms,
        body.store_jitter_ms.unwrap_or(0),
        fault.stalls,
        body.duration_s
    );
    crate::access::audit(&*state.notifier, "fault_injected", &caller.name, &target, "done");
    faults.inject_store_fault(fault, Duration::from_secs(body.duration_s));
    tracing::warn!(fault = %target, "store fault injected");
    Ok(HttpResponse::Accepted().json(fault_body(faults)))
}

/// Ends the fault in force.
#[utoipa::path(
    delete,
    path = "/api/v1/faults",
    tag = "monitoring",
    responses(
        (status = 200, description = "Cleared", body = FaultBody),
        (status = 403, description = "Fault injection is off", body = crate::error::ErrorBody),
    ),
)]
pub async fn clear_faults(req: actix_web::HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let faults = allowed(&state)?;
    faults.clear();
    let caller = crate::access::caller_of(&req);
    crate::access::audit(&*state.notifier, "faults_cleared", &caller.name, "store", "done");
    Ok(HttpResponse::Ok().json(fault_body(faults)))
}
