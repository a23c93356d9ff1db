//! [`CachedBlocks`] over SQL (the `cached_blocks` table).

use async_trait::async_trait;
use cid::Cid;
use model::content::CachedBlocks;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::error::Error;

/// Rows deleted per statement (SQLite's default limit of bound parameters is 32766).
const FORGET_BATCH: usize = 500;

/// The record of cached blocks in the database.
#[derive(Clone)]
pub struct SqlCachedBlocks {
    pool: AnyPool,
}

impl SqlCachedBlocks {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl CachedBlocks for SqlCachedBlocks {
    async fn load(&self) -> model::Result<Vec<(Cid, u64)>> {
        let rows = sqlx::query("SELECT key, size FROM cached_blocks ORDER BY fetched_at_ms, key")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        let mut cached = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("key").map_err(Error::from)?;
            let size: i64 = row.try_get("size").map_err(Error::from)?;
            match Cid::try_from(key.as_str()) {
                Ok(cid) => cached.push((cid, size.max(0) as u64)),
                Err(e) => tracing::warn!(key, error = %e, "a cached-block record that is not a CID; ignored"),
            }
        }
        Ok(cached)
    }

    async fn record(&self, key: &Cid, size: u64, fetched_at_ms: i64) -> model::Result<()> {
        sqlx::query(
            "INSERT INTO cached_blocks (key, size, fetched_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET size = excluded.size, fetched_at_ms = excluded.fetched_at_ms",
        )
        .bind(key.to_string())
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(fetched_at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn forget(&self, keys: &[Cid]) -> model::Result<()> {
        for batch in keys.chunks(FORGET_BATCH) {
            let sql = format!(
                "DELETE FROM cached_blocks WHERE key IN ({})",
                (1..=batch.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for key in batch {
                query = query.bind(key.to_string());
            }
            query.execute(&self.pool).await.map_err(Error::from)?;
        }
        Ok(())
    }
}
