//! [`NotificationRepository`] over SQL (the `notifications` table).

use async_trait::async_trait;
use model::notifications::{Notification, NotificationRepository, NotificationType};
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::error::Error;

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// Notification history in SQLite.
#[derive(Clone)]
pub struct SqlNotifications {
    pool: SqlitePool,
}

impl SqlNotifications {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn notification(row: &SqliteRow) -> Result<Notification, Error> {
    let kind: String = row.try_get("kind")?;
    let data: String = row.try_get("data")?;
    Ok(Notification {
        kind: NotificationType::parse(&kind)
            .ok_or_else(|| Error::InvalidRecord(format!("notification type {kind:?}")))?,
        data: serde_json::from_str(&data).map_err(|e| Error::InvalidRecord(format!("notification data: {e}")))?,
        timestamp_ms: row.try_get("timestamp_ms")?,
        source: row.try_get("source")?,
    })
}

#[async_trait]
impl NotificationRepository for SqlNotifications {
    async fn save_batch(&self, notifications: &[Notification]) -> model::Result<()> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        for slice in notifications.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO notifications (kind, data, timestamp_ms, source) ");
            insert.push_values(slice, |mut row, n| {
                row.push_bind(n.kind.as_str())
                    .push_bind(n.data.to_string())
                    .push_bind(n.timestamp_ms)
                    .push_bind(n.source.clone());
            });
            insert.build().execute(&mut *tx).await.map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn history(&self, kind: Option<NotificationType>, limit: u64) -> model::Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT kind, data, timestamp_ms, source FROM (
                SELECT id, kind, data, timestamp_ms, source FROM notifications
                WHERE ($1 IS NULL OR kind = $1) ORDER BY id DESC LIMIT $2
             ) AS recent ORDER BY id",
        )
        .bind(kind.map(|k| k.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(notification).collect::<Result<Vec<_>, _>>()?)
    }

    async fn prune(&self, keep: u64) -> model::Result<()> {
        sqlx::query(
            "DELETE FROM notifications WHERE id IN (
                SELECT id FROM (
                    SELECT id, ROW_NUMBER() OVER (PARTITION BY kind ORDER BY id DESC) AS newer
                    FROM notifications
                ) AS ranked WHERE newer > $1
             )",
        )
        .bind(keep as i64)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn history_survives_reopening_and_keeps_the_newest_per_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let repo = SqlNotifications::new(crate::database::open(&path).await.unwrap());
            let batch: Vec<_> = (0..5)
                .map(|i| Notification {
                    kind: if i == 4 {
                        NotificationType::PinAdded
                    } else {
                        NotificationType::ContentAdded
                    },
                    data: json!({"i": i}),
                    timestamp_ms: 1000 + i,
                    source: Some("test".into()),
                })
                .collect();
            repo.save_batch(&batch).await.unwrap();
            repo.prune(2).await.unwrap();
        }
        let repo = SqlNotifications::new(crate::database::open(&path).await.unwrap());
        let all = repo.history(None, 10).await.unwrap();
        let order: Vec<_> = all.iter().map(|n| n.data["i"].as_i64().unwrap()).collect();
        assert_eq!(
            order,
            vec![2, 3, 4],
            "oldest first; two content_added kept, one pin_added"
        );
        assert_eq!(all[0].source.as_deref(), Some("test"));
        let added = repo.history(Some(NotificationType::ContentAdded), 1).await.unwrap();
        assert_eq!(added[0].data["i"], 3);
    }
}
