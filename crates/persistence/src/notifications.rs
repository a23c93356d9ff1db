//! [`NotificationRepository`] over SQL (the `notifications` table).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use model::notifications::{EventData, Notification, NotificationRepository, NotificationType};
use sqlx::{AnyPool, AssertSqlSafe, Row, any::AnyRow};

use crate::database::{Engine, JsonColumn, engine_of, insert_json_rows, value_rows};
use crate::error::Error;

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// Notification history in the database.
#[derive(Clone)]
pub struct SqlNotifications {
    pool: AnyPool,
    engine: Engine,
    /// The INSERT of events the hub numbered, as [`numbered_rows`] encodes them.
    insert_numbered: Arc<str>,
    /// Set where instances share the database: rows are marked and announced.
    instance: Option<String>,
}

impl SqlNotifications {
    pub fn new(pool: AnyPool) -> Self {
        use JsonColumn::{Integer, Text};
        let engine = engine_of(&pool);
        let columns = [
            Integer("id"),
            Text("kind"),
            Text("data"),
            Integer("timestamp_ms"),
            Text("source"),
            Text("instance"),
        ];
        Self {
            insert_numbered: insert_json_rows(engine, "notifications", &columns).into(),
            engine,
            pool,
            instance: None,
        }
    }

    /// Marks every row with the instance that published it, and tells the instances listening on
    /// the same PostgreSQL database (`NOTIFY`, in the transaction that writes the rows, so they
    /// hear of committed rows only). See [`crate::PgPeerEvents`].
    pub fn announcing_as(mut self, instance: &str) -> Self {
        self.instance = Some(instance.to_owned());
        self
    }
}

/// The channel instances announce written events on; the payload is `{instance} {first id}
/// {last id}`.
pub(crate) const EVENTS_CHANNEL: &str = "ipfs_stream_events";

/// The transaction lock PostgreSQL writers of the history take (`pg_advisory_xact_lock`): one
/// writer at a time draws ids from the sequence and commits, so the ids of committed rows only
/// grow, and a reader that has seen id N has seen every row below it.
const HISTORY_WRITE_LOCK: i64 = 0x6970_6673_6576; // "ipfsev"

/// The columns a history row is read with.
pub(crate) const COLUMNS: &str = "id, instance, kind, data, timestamp_ms, source";

pub(crate) fn notification(row: &AnyRow) -> Result<Notification, Error> {
    let kind: String = row.try_get("kind")?;
    let data: String = row.try_get("data")?;
    Ok(Notification {
        kind: NotificationType::parse(&kind)
            .ok_or_else(|| Error::InvalidRecord(format!("notification type {kind:?}")))?,
        data: EventData::Json(
            serde_json::from_str(&data).map_err(|e| Error::InvalidRecord(format!("notification data: {e}")))?,
        ),
        timestamp_ms: row.try_get("timestamp_ms")?,
        source: row.try_get::<Option<String>, _>("source")?.map(Cow::Owned),
        id: Some(row.try_get("id")?),
        instance: row.try_get("instance")?,
    })
}

/// Events numbered by the hub as a JSON array of rows `[id, kind, data, timestamp_ms, source,
/// instance]`, `data` being the event's JSON text as a string (stored as written).
fn numbered_rows(notifications: &[Notification], instance: Option<&str>) -> String {
    let mut json = Vec::with_capacity(notifications.len() * 256);
    json.push(b'[');
    for (i, n) in notifications.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        let row = (
            n.id,
            n.kind.as_str(),
            n.data.to_json_text(),
            n.timestamp_ms,
            n.source.as_deref(),
            instance,
        );
        serde_json::to_writer(&mut json, &row).expect("a row of strings and integers encodes");
    }
    json.push(b']');
    String::from_utf8(json).expect("serde_json writes UTF-8")
}

#[async_trait]
impl NotificationRepository for SqlNotifications {
    async fn save_batch(&self, notifications: &[Notification]) -> model::Result<()> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(HISTORY_WRITE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
        }
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        // Runs of events numbered already (by the hub) and not (by the database).
        for slice in notifications
            .chunk_by(|a, b| a.id.is_some() == b.id.is_some())
            .flat_map(|run| run.chunks(ROWS_PER_INSERT))
        {
            if slice[0].id.is_some() {
                // Numbered rows go as one JSON parameter, and their ids are not read back.
                sqlx::query(AssertSqlSafe(self.insert_numbered.clone()))
                    .bind(numbered_rows(slice, self.instance.as_deref()))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from)?;
                for id in slice.iter().filter_map(|n| n.id) {
                    first = first.min(id);
                    last = last.max(id);
                }
                continue;
            }
            let sql = format!(
                "INSERT INTO notifications (kind, data, timestamp_ms, source, instance) VALUES {} RETURNING id",
                value_rows(self.engine, slice.len(), 5)
            );
            let mut insert = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
            for n in slice {
                insert = insert
                    .bind(n.kind.as_str())
                    .bind(n.data.to_json_text())
                    .bind(n.timestamp_ms)
                    .bind(n.source.as_deref())
                    .bind(self.instance.as_deref());
            }
            for id in insert.fetch_all(&mut *tx).await.map_err(Error::from)? {
                first = first.min(id);
                last = last.max(id);
            }
        }
        if let (true, Some(instance)) = (first <= last, &self.instance) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(EVENTS_CHANNEL)
                .bind(format!("{instance} {first} {last}"))
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn history(
        &self,
        kind: Option<NotificationType>,
        after: Option<i64>,
        limit: u64,
    ) -> model::Result<Vec<Notification>> {
        let sql = match after {
            None => format!(
                "SELECT {COLUMNS} FROM (
                    SELECT {COLUMNS} FROM notifications
                    WHERE ($1 IS NULL OR kind = $1) ORDER BY id DESC LIMIT $2
                 ) AS recent ORDER BY id"
            ),
            Some(_) => format!(
                "SELECT {COLUMNS} FROM notifications
                 WHERE ($1 IS NULL OR kind = $1) AND id > $3 ORDER BY id LIMIT $2"
            ),
        };
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(kind.map(|k| k.as_str()))
            .bind(limit as i64);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(Error::from)?;
        Ok(rows.iter().map(notification).collect::<Result<Vec<_>, _>>()?)
    }

    async fn prune(&self, keep: u64) -> model::Result<()> {
        // Which ids go is decided once, in the transaction that remembers the newest of them.
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let sql = format!(
            "INSERT INTO notifications_dropped (kind, through_id)
             SELECT kind, MAX(id) FROM (
                 SELECT id, kind, ROW_NUMBER() OVER (PARTITION BY kind ORDER BY id DESC) AS newer
                 FROM notifications
             ) AS ranked WHERE newer > $1 GROUP BY kind
             {}",
            self.keep_newest_dropped()
        );
        let noted = sqlx::query(AssertSqlSafe(sql))
            .bind(keep as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        if noted.rows_affected() > 0 {
            sqlx::query(
                "DELETE FROM notifications WHERE id IN (
                    SELECT id FROM (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY kind ORDER BY id DESC) AS newer
                        FROM notifications
                    ) AS ranked WHERE newer > $1
                 )",
            )
            .bind(keep as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn record_dropped(&self, newest: &[(NotificationType, i64)]) -> model::Result<()> {
        if newest.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO notifications_dropped (kind, through_id) VALUES {} {}",
            value_rows(self.engine, newest.len(), 2),
            self.keep_newest_dropped()
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (kind, id) in newest {
            insert = insert.bind(kind.as_str()).bind(*id);
        }
        insert.execute(&self.pool).await.map_err(Error::from)?;
        Ok(())
    }

    async fn dropped_after(&self, after: i64) -> model::Result<Vec<NotificationType>> {
        let kinds: Vec<String> =
            sqlx::query_scalar("SELECT kind FROM notifications_dropped WHERE through_id > $1 ORDER BY kind")
                .bind(after)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from)?;
        // A type this build does not know (written by a newer one) cannot be subscribed to here.
        let mut kinds: Vec<_> = kinds.iter().filter_map(|kind| NotificationType::parse(kind)).collect();
        kinds.sort_unstable();
        Ok(kinds)
    }
}

impl SqlNotifications {
    /// The upsert tail that keeps the newest id dropped of each type.
    fn keep_newest_dropped(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => {
                "ON CONFLICT (kind) DO UPDATE SET through_id = MAX(notifications_dropped.through_id, excluded.through_id)"
            }
            Engine::Postgres => {
                "ON CONFLICT (kind) DO UPDATE SET through_id = GREATEST(notifications_dropped.through_id, excluded.through_id)"
            }
        }
    }
}
