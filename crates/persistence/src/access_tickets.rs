//! [`TicketStore`] over SQL (the `access_tickets` table), for instances sharing a database: a
//! ticket asked of one opens a socket on any. Taking a ticket is one `DELETE ... RETURNING`, so
//! of two instances redeeming it at once, one gets it.

use async_trait::async_trait;
use model::access::{Caller, CredentialKind, IssuedTicket, Scopes, TicketStore};
use sqlx::{AnyPool, Row};

use crate::error::Error;

/// Tickets in the database.
#[derive(Clone)]
pub struct SqlTickets {
    pool: AnyPool,
}

impl SqlTickets {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl TicketStore for SqlTickets {
    async fn put(&self, ticket_sha256: [u8; 32], issued: &IssuedTicket) -> model::Result<()> {
        // Expired tickets are swept as new ones come.
        sqlx::query("DELETE FROM access_tickets WHERE expires_at_ms < $1")
            .bind(model::clock::now_ms())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        sqlx::query(
            "INSERT INTO access_tickets (ticket_sha256, name, caller_key, scopes, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ticket_sha256.as_slice())
        .bind(&issued.caller.name)
        .bind(&issued.caller.key)
        .bind(issued.caller.scopes.to_claim())
        .bind(issued.expires_at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn take(&self, ticket_sha256: [u8; 32]) -> model::Result<Option<IssuedTicket>> {
        let row = sqlx::query(
            "DELETE FROM access_tickets WHERE ticket_sha256 = $1
             RETURNING name, caller_key, scopes, expires_at_ms",
        )
        .bind(ticket_sha256.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        let Some(row) = row else { return Ok(None) };
        let read = || -> Result<IssuedTicket, Error> {
            let scopes: String = row.try_get("scopes")?;
            Ok(IssuedTicket {
                caller: Caller {
                    name: row.try_get("name")?,
                    key: row.try_get("caller_key")?,
                    scopes: Scopes::parse_list(&scopes)
                        .map_err(|e| Error::InvalidRecord(format!("ticket scopes: {e}")))?,
                    credential: CredentialKind::Ticket,
                },
                expires_at_ms: row.try_get("expires_at_ms")?,
            })
        };
        Ok(Some(read()?))
    }
}
