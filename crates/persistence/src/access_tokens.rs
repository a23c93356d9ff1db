//! [`TokenRepository`] over SQL (the `access_tokens` table).

use async_trait::async_trait;
use model::access::{Scopes, StoredToken, TokenRepository};
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::error::Error;

/// Tokens in SQLite.
#[derive(Clone)]
pub struct SqlTokens {
    pool: SqlitePool,
}

impl SqlTokens {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// The columns every query reads, in a macro so that queries stay literal strings.
macro_rules! columns {
    () => {
        "id, name, scopes, secret_sha256, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms"
    };
}

fn token(row: &SqliteRow) -> Result<StoredToken, Error> {
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
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM access_tokens WHERE id = ?"))
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
            "UPDATE access_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?) WHERE name = ? OR id = ? RETURNING ",
            columns!()
        ))
        .bind(at_ms)
        .bind(name_or_id)
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(token).transpose()?)
    }

    async fn touch(&self, id: &str, at_ms: i64) -> model::Result<()> {
        sqlx::query("UPDATE access_tokens SET last_used_at_ms = ? WHERE id = ?")
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

#[cfg(test)]
mod tests {
    use super::*;
    use model::access::{NewToken, Refusal, Scope, TokenService};
    use std::sync::Arc;

    #[tokio::test]
    async fn tokens_survive_a_reopen_hashed_and_revocable_by_name_or_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let pool = crate::database::open(&path).await.unwrap();
        let tokens = TokenService::new(Arc::new(SqlTokens::new(pool.clone())));
        let issued = tokens
            .create(NewToken {
                name: Some("ci".into()),
                scopes: Scopes::of(&[Scope::ContentWrite, Scope::MetricsRead]),
                ttl: Some(std::time::Duration::from_secs(3600)),
            })
            .await
            .unwrap();
        let second = tokens
            .create(NewToken {
                name: None,
                scopes: Scopes::of(&[Scope::Admin]),
                ttl: None,
            })
            .await
            .unwrap();
        assert!(matches!(
            tokens
                .create(NewToken {
                    name: Some("ci".into()),
                    scopes: Scopes::of(&[Scope::Admin]),
                    ttl: None
                })
                .await,
            Err(model::Error::Conflict(_))
        ));
        pool.close().await;

        let pool = crate::database::open(&path).await.unwrap();
        let repository = SqlTokens::new(pool);
        let listed = repository.list().await.unwrap();
        assert_eq!(listed, vec![issued.token.clone(), second.token.clone()]);
        let tokens = TokenService::new(Arc::new(repository.clone()));
        let caller = tokens.authenticate(&issued.bearer).await.unwrap().unwrap();
        assert_eq!(caller.scopes, Scopes::of(&[Scope::ContentWrite, Scope::MetricsRead]));

        tokens.revoke(&second.token.id).await.unwrap();
        let first_revocation = repository.find(&second.token.id).await.unwrap().unwrap().revoked_at_ms;
        assert!(first_revocation.is_some());
        repository.revoke("ci", 1).await.unwrap();
        repository.revoke("ci", 2).await.unwrap();
        assert_eq!(
            repository.find(&issued.token.id).await.unwrap().unwrap().revoked_at_ms,
            Some(1)
        );
        assert_eq!(
            tokens.authenticate(&second.bearer).await.unwrap().unwrap_err(),
            Refusal::Revoked
        );
        assert!(repository.revoke("nobody", 3).await.unwrap().is_none());
        assert_eq!(repository.count().await.unwrap(), 2);
    }
}
