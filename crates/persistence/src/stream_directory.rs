//! [`StreamDirectory`] over SQL: the `webrtc_streams` table (a stream's spec and description,
//! ended or not) and the `instances` table (each instance's last beat).

use async_trait::async_trait;
use model::webrtc::directory::{SharedStream, StreamDirectory};
use model::webrtc::service::StreamSpec;
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::error::Error;

/// The directory in the shared database, as seen by one instance.
#[derive(Clone)]
pub struct SqlStreamDirectory {
    pool: AnyPool,
    /// This instance's key (name and run tag) and name.
    instance: String,
    name: String,
}

impl SqlStreamDirectory {
    pub fn new(pool: AnyPool, instance: &str, name: &str) -> Self {
        Self {
            pool,
            instance: instance.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// How long an ended stream stays in the table.
const KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;

macro_rules! columns {
    () => {
        "stream_id, instance, instance_name, spec, info, created_at_ms"
    };
}

fn shared(row: &AnyRow) -> Result<SharedStream, Error> {
    let spec: String = row.try_get("spec")?;
    let info: String = row.try_get("info")?;
    Ok(SharedStream {
        stream_id: row.try_get("stream_id")?,
        owner: row.try_get("instance")?,
        owner_name: row.try_get("instance_name")?,
        spec: StreamSpec::from_stored(&spec).map_err(|e| Error::InvalidRecord(e.to_string()))?,
        info: serde_json::from_str(&info).map_err(|e| Error::InvalidRecord(format!("stream info: {e}")))?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

#[async_trait]
impl StreamDirectory for SqlStreamDirectory {
    async fn announce(&self, stream: &SharedStream) -> model::Result<()> {
        sqlx::query(concat!(
            "INSERT INTO webrtc_streams (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&stream.stream_id)
        .bind(&stream.owner)
        .bind(&stream.owner_name)
        .bind(stream.spec.to_stored())
        .bind(stream.info.to_string())
        .bind(stream.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn withdraw(&self, stream_id: &str, at_ms: i64) -> model::Result<()> {
        sqlx::query("UPDATE webrtc_streams SET ended_at_ms = $1 WHERE stream_id = $2 AND ended_at_ms IS NULL")
            .bind(at_ms)
            .bind(stream_id)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn live(&self) -> model::Result<Vec<SharedStream>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM webrtc_streams WHERE ended_at_ms IS NULL ORDER BY created_at_ms, stream_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(shared).collect::<Result<_, _>>()?)
    }

    async fn find(&self, stream_id: &str) -> model::Result<Option<SharedStream>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM webrtc_streams WHERE stream_id = $1 AND ended_at_ms IS NULL"
        ))
        .bind(stream_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(shared).transpose()?)
    }

    async fn beat(&self, at_ms: i64) -> model::Result<()> {
        sqlx::query(
            "INSERT INTO instances (instance, name, beat_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (instance) DO UPDATE SET beat_at_ms = excluded.beat_at_ms",
        )
        .bind(&self.instance)
        .bind(&self.name)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn reap(&self, silent_since_ms: i64, at_ms: i64) -> model::Result<Vec<SharedStream>> {
        // One UPDATE: of several instances reaping at once, each stream goes to one of them.
        let rows = sqlx::query(concat!(
            "UPDATE webrtc_streams SET ended_at_ms = $1
             WHERE ended_at_ms IS NULL AND instance <> $2 AND instance IN (
                 SELECT instance FROM instances WHERE beat_at_ms < $3
             ) RETURNING ",
            columns!()
        ))
        .bind(at_ms)
        .bind(&self.instance)
        .bind(silent_since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        // Ended streams are kept a day, for whoever asks about them; gone instances are forgotten
        // once their streams are ended.
        sqlx::query("DELETE FROM webrtc_streams WHERE ended_at_ms < $1")
            .bind(at_ms - KEEP_ENDED_MS)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        sqlx::query(
            "DELETE FROM instances WHERE beat_at_ms < $1 AND instance NOT IN (
                 SELECT instance FROM webrtc_streams WHERE ended_at_ms IS NULL
             )",
        )
        .bind(silent_since_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(shared).collect::<Result<_, _>>()?)
    }
}
