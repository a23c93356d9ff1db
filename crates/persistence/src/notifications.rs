//! [`NotificationRepository`] over SQL (the `notifications` table).

use async_trait::async_trait;
use model::notifications::{Notification, NotificationRepository, NotificationType};
use sqlx::{AnyPool, AssertSqlSafe, Row, any::AnyRow};

use crate::database::value_rows;
use crate::error::Error;

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// Notification history in the database.
#[derive(Clone)]
pub struct SqlNotifications {
    pool: AnyPool,
}

impl SqlNotifications {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

fn notification(row: &AnyRow) -> Result<Notification, Error> {
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
            let sql = format!(
                "INSERT INTO notifications (kind, data, timestamp_ms, source) VALUES {}",
                value_rows(slice.len(), 4)
            );
            let mut insert = sqlx::query(AssertSqlSafe(sql));
            for n in slice {
                insert = insert
                    .bind(n.kind.as_str())
                    .bind(n.data.to_string())
                    .bind(n.timestamp_ms)
                    .bind(n.source.as_deref());
            }
            insert.execute(&mut *tx).await.map_err(Error::from)?;
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
