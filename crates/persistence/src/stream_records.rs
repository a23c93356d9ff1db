//! [`StreamRecordRepository`] over SQL (the `stream_records` table).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use model::stream_records::{
    Direction, HistoryQuery, Outcome, RecordBatch, StreamRecord, StreamRecordRepository, StreamType,
};
use sqlx::{AnyPool, AssertSqlSafe, Row, any::AnyRow};

use crate::database::{JsonColumn, engine_of, insert_json_rows};
use crate::error::Error;

/// Stream records in the database.
#[derive(Clone)]
pub struct SqlStreamRecords {
    pool: AnyPool,
    /// The INSERT of a [`RecordBatch`]'s rows, in the batch's column order.
    insert: Arc<str>,
}

impl SqlStreamRecords {
    pub fn new(pool: AnyPool) -> Self {
        use JsonColumn::{Integer, Text};
        let columns = [
            Text("stream_type"),
            Text("direction"),
            Text("path"),
            Integer("bytes"),
            Integer("chunks"),
            Integer("chunk_size"),
            Integer("duration_us"),
            Text("correlation_id"),
            Text("outcome"),
            Integer("started_at_ms"),
        ];
        Self {
            insert: insert_json_rows(engine_of(&pool), "stream_records", &columns).into(),
            pool,
        }
    }
}

fn record(row: &AnyRow) -> Result<StreamRecord, Error> {
    let name = |column: &str| -> Result<String, Error> { Ok(row.try_get(column)?) };
    let invalid = |what: &str, value: String| Error::InvalidRecord(format!("{what} {value:?}"));
    let stream_type = name("stream_type")?;
    let direction = name("direction")?;
    let outcome = name("outcome")?;
    Ok(StreamRecord {
        stream_type: StreamType::parse(&stream_type).ok_or_else(|| invalid("stream type", stream_type.clone()))?,
        direction: Direction::parse(&direction).ok_or_else(|| invalid("direction", direction.clone()))?,
        path: row.try_get("path")?,
        bytes: row.try_get::<i64, _>("bytes")? as u64,
        chunks: row.try_get::<i64, _>("chunks")? as u64,
        chunk_size: row.try_get::<i64, _>("chunk_size")? as u64,
        duration: Duration::from_micros(row.try_get::<i64, _>("duration_us")? as u64),
        correlation_id: row.try_get("correlation_id")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| invalid("outcome", outcome.clone()))?,
        started_at_ms: row.try_get("started_at_ms")?,
    })
}

#[async_trait]
impl StreamRecordRepository for SqlStreamRecords {
    async fn save_batch(&self, records: &RecordBatch) -> model::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        sqlx::query(AssertSqlSafe(self.insert.clone()))
            .bind(records.as_json())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn prune(&self, older_than_ms: i64, keep_newest: u64) -> model::Result<u64> {
        // Ids only grow and only the oldest rows go, so the newest N are the top N ids: a range
        // delete on the primary key, no sort.
        let over = sqlx::query(
            "DELETE FROM stream_records WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM stream_records) - $1",
        )
        .bind(keep_newest.min(i64::MAX as u64) as i64)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        let old = sqlx::query("DELETE FROM stream_records WHERE started_at_ms < $1")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(over.rows_affected() + old.rows_affected())
    }

    async fn history(&self, query: &HistoryQuery) -> model::Result<Vec<StreamRecord>> {
        let rows = sqlx::query(
            "SELECT stream_type, direction, path, bytes, chunks, chunk_size, duration_us, correlation_id, outcome,
                    started_at_ms
             FROM stream_records
             WHERE ($1 IS NULL OR started_at_ms >= $1) AND ($2 IS NULL OR started_at_ms <= $2)
               AND ($3 IS NULL OR stream_type = $3)
             ORDER BY started_at_ms DESC, id DESC
             LIMIT $4",
        )
        .bind(query.since_ms)
        .bind(query.until_ms)
        .bind(query.stream_type.map(|t| t.as_str()))
        .bind(query.limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(record).collect::<Result<Vec<_>, _>>()?)
    }
}
