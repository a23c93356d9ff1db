//! Streaming metrics over HTTP: summaries per `stream_{type}_{direction}` and the records.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use model::stream_records::{Distribution, HistoryQuery, StreamRecord, StreamType};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Checked;

/// Records a summary is computed over: the most recent ones.
const SUMMARY_WINDOW: u64 = 10_000;

/// count, avg, min, max, median, p95, p99 of a series.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
}

impl From<Distribution> for Stats {
    fn from(d: Distribution) -> Self {
        Self {
            count: d.count,
            avg: d.avg,
            min: d.min,
            max: d.max,
            median: d.median,
            p95: d.p95,
            p99: d.p99,
        }
    }
}

/// The summary of one `stream_{type}_{direction}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OperationStats {
    pub count: u64,
    pub total_bytes: u64,
    /// Seconds.
    pub duration: Stats,
    /// Bytes per second.
    pub throughput: Stats,
    /// Share of streams that failed on the server's side.
    pub error_rate: f64,
    /// Streams the client left before the end.
    pub aborted: u64,
}

/// Summaries over the most recent streams.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamingSummary {
    /// Keyed by `stream_{type}_{direction}`, e.g. `stream_http_outbound`.
    pub operations: BTreeMap<String, OperationStats>,
    /// Streams summarised, at most this many of the most recent.
    pub window: u64,
    /// Records dropped because the writer could not keep up.
    pub dropped: u64,
}

/// Streaming metrics per `stream_{type}_{direction}` over the most recent 10 000 streams.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/streaming",
    tag = "metrics",
    responses((status = 200, description = "Summaries", body = StreamingSummary)),
)]
pub async fn summary(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let summaries = state.metrics.summary(SUMMARY_WINDOW).await?;
    let operations = summaries
        .into_iter()
        .map(|s| {
            let stats = OperationStats {
                count: s.count,
                total_bytes: s.total_bytes,
                duration: s.duration.into(),
                throughput: s.throughput.into(),
                error_rate: s.error_rate,
                aborted: s.aborted,
            };
            (s.operation, stats)
        })
        .collect();
    Ok(HttpResponse::Ok().json(StreamingSummary {
        operations,
        window: SUMMARY_WINDOW,
        dropped: state.metrics.dropped(),
    }))
}

#[derive(Debug, Deserialize, Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// From this time (milliseconds since the Unix epoch).
    pub since: Option<i64>,
    /// Until this time (milliseconds since the Unix epoch).
    pub until: Option<i64>,
    /// http, websocket, sse or webrtc.
    pub stream_type: Option<String>,
    /// Records at most, 1 to 10000 (default 100).
    #[validate(range(min = 1, max = 10000, message = "must be between 1 and 10000"))]
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
}

/// One streaming operation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamRecordBody {
    pub operation: String,
    pub stream_type: &'static str,
    pub direction: &'static str,
    pub path: String,
    pub bytes: u64,
    pub chunks: u64,
    pub chunk_size: u64,
    pub duration_seconds: f64,
    pub throughput_bps: f64,
    pub correlation_id: String,
    /// ok, error or aborted.
    pub outcome: &'static str,
    pub started_at_ms: i64,
}

impl From<StreamRecord> for StreamRecordBody {
    fn from(r: StreamRecord) -> Self {
        Self {
            operation: r.operation(),
            stream_type: r.stream_type.as_str(),
            direction: r.direction.as_str(),
            throughput_bps: r.throughput(),
            duration_seconds: r.duration.as_secs_f64(),
            path: r.path,
            bytes: r.bytes,
            chunks: r.chunks,
            chunk_size: r.chunk_size,
            correlation_id: r.correlation_id,
            outcome: r.outcome.as_str(),
            started_at_ms: r.started_at_ms,
        }
    }
}

/// Stream records, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/streaming/history",
    tag = "metrics",
    params(HistoryParams),
    responses(
        (status = 200, description = "Records, newest first", body = Vec<StreamRecordBody>),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ),
)]
pub async fn history(params: Checked<HistoryParams>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stream_type = match params.stream_type.as_deref() {
        None => None,
        Some(name) => Some(StreamType::parse(name).ok_or_else(|| {
            ApiError::bad_parameter("stream_type", format!("{name:?} is not http, websocket, sse or webrtc"))
        })?),
    };
    let query = HistoryQuery {
        since_ms: params.since,
        until_ms: params.until,
        stream_type,
        limit: params.limit.unwrap_or(100),
    };
    let records = state.metrics.history(&query).await?;
    Ok(HttpResponse::Ok().json(records.into_iter().map(StreamRecordBody::from).collect::<Vec<_>>()))
}
