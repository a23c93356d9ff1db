//! [`MetricsHistory`] over SQL: samples in `metric_samples` (long format, one row per series), and
//! `anomalies`. Long ranges are averaged in the database, bucket by bucket, so a query never
//! brings more than [`model::monitoring::MAX_POINTS`] rows back.

use async_trait::async_trait;
use model::monitoring::{Anomaly, Instances, MetricsHistory, Sample, SeriesPoint, SeriesQuery};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::database::{Engine, engine_of, value_rows};
use crate::error::Error;

/// The service's buckets: each instance's mean and extremes per bucket, then `$combine` of them
/// across instances.
macro_rules! per_instance_then {
    ($combine:literal) => {
        concat!(
            "SELECT bucket, ",
            $combine,
            "(mean) AS mean, ",
            $combine,
            "(low) AS low, ",
            $combine,
            "(high) AS high \
             FROM (SELECT (at_ms - $1) / $2 AS bucket, instance, AVG(value) AS mean, MIN(value) AS low, \
                          MAX(value) AS high \
                   FROM metric_samples WHERE metric = $3 AND at_ms >= $1 AND at_ms < $4 \
                   GROUP BY bucket, instance) AS per_instance \
             GROUP BY bucket ORDER BY bucket"
        )
    };
}

#[derive(Clone)]
pub struct SqlMetricsHistory {
    pool: AnyPool,
    engine: Engine,
    /// Set where instances share the database: rows are marked with it, and read back only.
    instance: Option<String>,
}

impl SqlMetricsHistory {
    pub fn new(pool: AnyPool) -> Self {
        Self {
            engine: engine_of(&pool),
            pool,
            instance: None,
        }
    }

    /// One instance's series (every sample's, when `instance` is `None`).
    async fn series(&self, query: SeriesQuery, instance: Option<String>) -> model::Result<Vec<SeriesPoint>> {
        let rows = sqlx::query(
            "SELECT (at_ms - $1) / $2 AS bucket, AVG(value) AS mean, MIN(value) AS low, MAX(value) AS high \
             FROM metric_samples WHERE metric = $3 AND at_ms >= $1 AND at_ms < $4 \
             AND ($5 IS NULL OR instance = $5) GROUP BY bucket ORDER BY bucket",
        )
        .bind(query.since_ms)
        .bind(query.step_ms)
        .bind(query.metric.as_str())
        .bind(query.until_ms)
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        points(&rows, &query)
    }

    /// The whole service's series: each instance's bucket first, then the instances' added up
    /// (or averaged, for series that do not add up).
    async fn service(&self, query: SeriesQuery) -> model::Result<Vec<SeriesPoint>> {
        let sql = if query.metric.adds_up() {
            per_instance_then!("SUM")
        } else {
            per_instance_then!("AVG")
        };
        let rows = sqlx::query(sql)
            .bind(query.since_ms)
            .bind(query.step_ms)
            .bind(query.metric.as_str())
            .bind(query.until_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        points(&rows, &query)
    }

    /// Samples and anomalies of this instance only, among those sharing the database.
    pub fn of_instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.to_owned());
        self
    }
}

/// Bucket rows as points.
fn points(rows: &[sqlx::any::AnyRow], query: &SeriesQuery) -> model::Result<Vec<SeriesPoint>> {
    rows.iter()
        .map(|row| {
            Ok(SeriesPoint {
                t: query.since_ms + row.try_get::<i64, _>("bucket")? * query.step_ms,
                value: row.try_get("mean")?,
                min: row.try_get("low")?,
                max: row.try_get("high")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| Error::from(e).into())
}

#[async_trait]
impl MetricsHistory for SqlMetricsHistory {
    async fn store(&self, sample: &Sample) -> model::Result<()> {
        if sample.values.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO metric_samples (metric, at_ms, value, instance) VALUES {}",
            value_rows(self.engine, sample.values.len(), 4)
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (metric, value) in &sample.values {
            insert = insert
                .bind(metric.as_str())
                .bind(sample.at_ms)
                .bind(*value)
                .bind(self.instance.as_deref());
        }
        insert.execute(&self.pool).await.map_err(Error::from)?;
        Ok(())
    }

    async fn query(&self, query: SeriesQuery) -> model::Result<Vec<SeriesPoint>> {
        let instance = self.instance.clone();
        self.series(query, instance).await
    }

    async fn query_instances(&self, query: SeriesQuery, instances: Instances) -> model::Result<Vec<SeriesPoint>> {
        match instances {
            Instances::This => self.query(query).await,
            Instances::Named(name) => self.series(query, Some(name)).await,
            Instances::All => self.service(query).await,
        }
    }

    async fn instances(&self) -> model::Result<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT instance FROM metric_samples WHERE instance IS NOT NULL ORDER BY instance",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(names)
    }

    async fn prune(&self, before_ms: i64) -> model::Result<u64> {
        // By age alone, whichever instance sampled them: so that an instance gone for good
        // leaves nothing behind.
        let done = sqlx::query("DELETE FROM metric_samples WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        sqlx::query("DELETE FROM anomalies WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected())
    }

    async fn store_anomaly(&self, anomaly: &Anomaly) -> model::Result<()> {
        sqlx::query(
            "INSERT INTO anomalies (at_ms, metric, value, expected_low, expected_high, score, detector, instance) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(anomaly.at_ms)
        .bind(&anomaly.metric)
        .bind(anomaly.value)
        .bind(anomaly.expected_low)
        .bind(anomaly.expected_high)
        .bind(anomaly.score)
        .bind(&anomaly.detector)
        .bind(self.instance.as_deref())
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn anomalies(&self, since_ms: i64, limit: u32) -> model::Result<Vec<Anomaly>> {
        let rows = sqlx::query(
            "SELECT at_ms, metric, value, expected_low, expected_high, score, detector FROM anomalies \
             WHERE at_ms >= $1 AND ($3 IS NULL OR instance = $3) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit as i64)
        .bind(self.instance.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        rows.iter()
            .map(|row| {
                Ok(Anomaly {
                    at_ms: row.try_get("at_ms")?,
                    metric: row.try_get("metric")?,
                    value: row.try_get("value")?,
                    expected_low: row.try_get("expected_low")?,
                    expected_high: row.try_get("expected_high")?,
                    score: row.try_get("score")?,
                    detector: row.try_get("detector")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| Error::from(e).into())
    }
}
