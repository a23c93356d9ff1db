//! Watching the server: live counters the faces update ([`LiveStats`]), a [`Sampler`] that turns
//! them into one snapshot per interval, stores it ([`MetricsHistory`]), publishes it as a
//! `system_metrics` notification and runs an anomaly detector on every series.

mod history;
mod live;
mod sampler;

pub use history::{
    Anomaly, Instances, MAX_POINTS, MemoryMetricsHistory, Metric, MetricsHistory, Sample, SeriesPoint, SeriesQuery,
};
pub use live::{ActiveContent, LiveStats, LiveStream};
pub use sampler::{ProcessProbe, ProcessUsage, Sampler, SamplerConfig, SeriesWatch};

#[cfg(feature = "mock")]
pub use history::MockMetricsHistory;
