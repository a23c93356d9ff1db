//! [`StreamRecordRepository`] over SQL (the `stream_records` table).

use std::time::Duration;

use async_trait::async_trait;
use model::stream_records::{Direction, HistoryQuery, Outcome, StreamRecord, StreamRecordRepository, StreamType};
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::error::Error;

/// Rows per INSERT statement (10 parameters each, under SQLite's limit of 32766).
const ROWS_PER_INSERT: usize = 500;

/// Stream records in SQLite.
#[derive(Clone)]
pub struct SqlStreamRecords {
    pool: SqlitePool,
}

impl SqlStreamRecords {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn record(row: &SqliteRow) -> Result<StreamRecord, Error> {
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
    async fn save_batch(&self, records: &[StreamRecord]) -> model::Result<()> {
        // One multi-row INSERT per slice: a round trip to SQLite per row would cost more than the row.
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        for slice in records.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO stream_records (stream_type, direction, path, bytes, chunks, chunk_size, duration_us, \
                 correlation_id, outcome, started_at_ms) ",
            );
            insert.push_values(slice, |mut row, r| {
                row.push_bind(r.stream_type.as_str())
                    .push_bind(r.direction.as_str())
                    .push_bind(r.path.clone())
                    .push_bind(r.bytes as i64)
                    .push_bind(r.chunks as i64)
                    .push_bind(r.chunk_size as i64)
                    .push_bind(r.duration.as_micros() as i64)
                    .push_bind(r.correlation_id.clone())
                    .push_bind(r.outcome.as_str())
                    .push_bind(r.started_at_ms);
            });
            insert.build().execute(&mut *tx).await.map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(stream_type: StreamType, started_at_ms: i64) -> StreamRecord {
        StreamRecord {
            stream_type,
            direction: Direction::Inbound,
            path: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o".into(),
            bytes: 12,
            chunks: 1,
            chunk_size: 262_144,
            duration: Duration::from_micros(1500),
            correlation_id: "req-1".into(),
            outcome: Outcome::Aborted,
            started_at_ms,
        }
    }

    #[tokio::test]
    async fn records_round_trip_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let repo = SqlStreamRecords::new(crate::database::open(&dir.path().join("db")).await.unwrap());
        let records: Vec<_> = (0..10)
            .map(|i| {
                sample(
                    if i % 2 == 0 {
                        StreamType::Websocket
                    } else {
                        StreamType::Sse
                    },
                    1000 + i,
                )
            })
            .collect();
        repo.save_batch(&records).await.unwrap();
        let all = repo
            .history(&HistoryQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], records[9], "newest first, every field kept");
        let some = repo
            .history(&HistoryQuery {
                since_ms: Some(1002),
                until_ms: Some(1007),
                stream_type: Some(StreamType::Sse),
                limit: 2,
            })
            .await
            .unwrap();
        assert_eq!(
            some.iter().map(|r| r.started_at_ms).collect::<Vec<_>>(),
            vec![1007, 1005]
        );
    }

    #[tokio::test]
    async fn pruning_keeps_the_newest_and_the_recent() {
        let dir = tempfile::tempdir().unwrap();
        let repo = SqlStreamRecords::new(crate::database::open(&dir.path().join("db")).await.unwrap());
        let records: Vec<_> = (0..100).map(|i| sample(StreamType::Http, 1000 + i)).collect();
        repo.save_batch(&records).await.unwrap();
        let started = |repo: &SqlStreamRecords| {
            let repo = repo.clone();
            async move {
                let all = repo
                    .history(&HistoryQuery {
                        limit: 1000,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                all.iter().map(|r| r.started_at_ms).collect::<Vec<_>>()
            }
        };
        assert_eq!(repo.prune(0, 1000).await.unwrap(), 0, "nothing beyond either bound");
        assert_eq!(repo.prune(0, 30).await.unwrap(), 70);
        assert_eq!(started(&repo).await, (1070..1100).rev().collect::<Vec<_>>());
        assert_eq!(repo.prune(1090, 30).await.unwrap(), 20);
        assert_eq!(started(&repo).await, (1090..1100).rev().collect::<Vec<_>>());
        repo.save_batch(&[sample(StreamType::Sse, 2000)]).await.unwrap();
        assert_eq!(
            repo.prune(0, 5).await.unwrap(),
            6,
            "the count bound holds across later writes"
        );
        assert_eq!(started(&repo).await, vec![2000, 1099, 1098, 1097, 1096]);
    }

    #[tokio::test]
    async fn batches_larger_than_one_insert_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let repo = SqlStreamRecords::new(crate::database::open(&dir.path().join("db")).await.unwrap());
        let records: Vec<_> = (0..1234).map(|i| sample(StreamType::Http, i)).collect();
        repo.save_batch(&records).await.unwrap();
        let all = repo
            .history(&HistoryQuery {
                limit: 5000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 1234);
        assert_eq!(all[0].started_at_ms, 1233);
    }
}
