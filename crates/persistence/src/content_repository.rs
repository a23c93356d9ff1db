//! [`ContentRepository`] over SQL (the `content` table).

use async_trait::async_trait;
use cid::Cid;
use model::content::{ContentRecord, ContentRepository, Page};
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::error::Error;

/// Content records in the database.
#[derive(Clone)]
pub struct SqlContentRepository {
    pool: AnyPool,
}

impl SqlContentRepository {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

/// A SELECT of every column of `content`, followed by the given clauses.
macro_rules! select_content {
    ($rest:literal) => {
        concat!(
            "SELECT cid, size, name, content_type, cid_version, blocks, created_at_ms, CAST(pinned AS INTEGER) AS pinned FROM content ",
            $rest
        )
    };
}

fn record(row: &AnyRow) -> Result<ContentRecord, Error> {
    let cid: String = row.try_get("cid")?;
    let cid = Cid::try_from(cid.as_str()).map_err(|e| Error::InvalidRecord(format!("cid {cid:?}: {e}")))?;
    Ok(ContentRecord {
        cid,
        size: row.try_get::<i64, _>("size")? as u64,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        cid_version: row.try_get::<i64, _>("cid_version")? as u8,
        blocks: row.try_get::<i64, _>("blocks")? as u64,
        created_at_ms: row.try_get("created_at_ms")?,
        pinned: row.try_get::<i64, _>("pinned")? != 0,
    })
}

#[async_trait]
impl ContentRepository for SqlContentRepository {
    async fn save(&self, r: &ContentRecord) -> model::Result<()> {
        sqlx::query(
            "INSERT INTO content (cid, size, name, content_type, cid_version, blocks, created_at_ms, pinned)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (cid) DO UPDATE SET
                size = excluded.size,
                name = COALESCE(excluded.name, content.name),
                content_type = COALESCE(excluded.content_type, content.content_type),
                blocks = CASE WHEN excluded.blocks > 0 THEN excluded.blocks ELSE content.blocks END,
                pinned = (content.pinned OR excluded.pinned)",
        )
        .bind(r.cid.to_string())
        .bind(r.size as i64)
        .bind(&r.name)
        .bind(&r.content_type)
        .bind(i64::from(r.cid_version))
        .bind(r.blocks as i64)
        .bind(r.created_at_ms)
        .bind(r.pinned)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn get(&self, cid: &Cid) -> model::Result<Option<ContentRecord>> {
        let row = sqlx::query(select_content!("WHERE cid = $1"))
            .bind(cid.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn list(&self, page: Page) -> model::Result<(Vec<ContentRecord>, u64)> {
        let rows = sqlx::query(select_content!("ORDER BY created_at_ms DESC, cid LIMIT $1 OFFSET $2"))
            .bind(page.limit as i64)
            .bind(page.offset as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM content")
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)?;
        let records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        Ok((records, total as u64))
    }

    async fn set_pinned(&self, cid: &Cid, pinned: bool) -> model::Result<bool> {
        let done = sqlx::query("UPDATE content SET pinned = $1 WHERE cid = $2")
            .bind(pinned)
            .bind(cid.to_string())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }

    async fn pinned(&self) -> model::Result<Vec<Cid>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT cid FROM content WHERE pinned ORDER BY cid")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        rows.iter()
            .map(|cid| {
                Cid::try_from(cid.as_str()).map_err(|e| Error::InvalidRecord(format!("cid {cid:?}: {e}")).into())
            })
            .collect()
    }

    async fn delete(&self, cid: &Cid) -> model::Result<bool> {
        let done = sqlx::query("DELETE FROM content WHERE cid = $1")
            .bind(cid.to_string())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }
}
