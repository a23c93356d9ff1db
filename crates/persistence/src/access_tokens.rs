//! [`TokenRepository`] over SQL (the `access_tokens` table).

use async_trait::async_trait;
use model::access::{Scopes, StoredToken, TokenRepository};
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::error::Error;

/// Tokens in the database.
#[derive(Clone)]
pub struct SqlTokens {
    pool: AnyPool,
}

impl SqlTokens {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

/// The columns every query reads, in a macro so that queries stay literal strings.
macro_rules! columns {
    () => {
        "id, name, scopes, secret_sha256, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms"
    };
}

fn token(row: &AnyRow) -> Result<StoredToken, Error> {
    let scopes: String = row.try_get("scopes")?;
    let hash: Vec<u8> = row.try_get("secret_sha256")?;
    Ok(StoredToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: Scopes::parse_list(&scopes).map_err(|e| Error::InvalidRecord(format!("token scopes: {e}")))?,
        secret_sha256: hash
            .try_into()
            .map_err(|_| Error::InvalidRecord("token hash is not 32 bytes".into()))?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

#[async_trait]
impl TokenRepository for SqlTokens {
    async fn insert(&self, token: &StoredToken) -> model::Result<()> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO access_tokens (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(token.scopes.to_claim())
        .bind(token.secret_sha256.as_slice())
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .bind(token.last_used_at_ms)
        .bind(token.revoked_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(model::Error::Conflict(format!("a token named {:?} exists", token.name)))
            }
            Err(e) => Err(Error::from(e).into()),
        }
    }

    async fn find(&self, id: &str) -> model::Result<Option<StoredToken>> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM access_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.as_ref().map(token).transpose()?)
    }

    async fn list(&self) -> model::Result<Vec<StoredToken>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM access_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(token).collect::<Result<_, _>>()?)
    }

    async fn revoke(&self, name_or_id: &str, at_ms: i64) -> model::Result<Option<StoredToken>> {
        let row = sqlx::query(concat!(
            "UPDATE access_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE name = $2 OR id = $2 RETURNING ",
            columns!()
        ))
        .bind(at_ms)
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(token).transpose()?)
    }

    async fn touch(&self, id: &str, at_ms: i64) -> model::Result<()> {
        sqlx::query("UPDATE access_tokens SET last_used_at_ms = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn count(&self) -> model::Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(count as u64)
    }
}
