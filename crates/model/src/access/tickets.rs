//! Single-use tickets: browsers cannot put a header on a WebSocket upgrade or an EventSource, so a
//! page trades its bearer token for a ticket, valid [`TICKET_TTL`], good for one such request and
//! carrying the token's scopes. A ticket in a URL may be logged by a proxy; it is worthless once
//! used or expired, which a token is not.
//!
//! Tickets wait in a [`TicketStore`]: this process's memory, or the database instances share
//! (a ticket asked of one instance then opens a socket on any). Stores keep a ticket's SHA-256,
//! never the ticket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Caller, CredentialKind, Refusal, random_hex};
use crate::clock::now_ms;
use crate::error::Result;

/// How long a ticket stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets at most in memory; past that, expired ones are swept first.
const SWEEP_ABOVE: usize = 1024;
const PREFIX: &str = "itk_";

/// A ticket waiting to be redeemed.
#[derive(Clone, Debug, PartialEq)]
pub struct IssuedTicket {
    pub caller: Caller,
    pub expires_at_ms: i64,
}

/// Where issued tickets wait, by the SHA-256 of each.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TicketStore: Send + Sync {
    async fn put(&self, ticket_sha256: [u8; 32], issued: &IssuedTicket) -> Result<()>;
    /// The ticket, removed: a second take of it finds nothing.
    async fn take(&self, ticket_sha256: [u8; 32]) -> Result<Option<IssuedTicket>>;
}

/// Tickets in this process's memory.
#[derive(Default)]
pub struct MemoryTicketStore {
    issued: Mutex<HashMap<[u8; 32], IssuedTicket>>,
}

#[async_trait]
impl TicketStore for MemoryTicketStore {
    async fn put(&self, ticket_sha256: [u8; 32], issued: &IssuedTicket) -> Result<()> {
        let mut tickets = self.issued.lock().expect("tickets lock");
        if tickets.len() >= SWEEP_ABOVE {
            let now = now_ms();
            tickets.retain(|_, ticket| ticket.expires_at_ms > now);
        }
        tickets.insert(ticket_sha256, issued.clone());
        Ok(())
    }

    async fn take(&self, ticket_sha256: [u8; 32]) -> Result<Option<IssuedTicket>> {
        Ok(self.issued.lock().expect("tickets lock").remove(&ticket_sha256))
    }
}

/// Issuing and redeeming tickets.
pub struct Tickets {
    store: Arc<dyn TicketStore>,
    ttl: Duration,
}

impl Default for Tickets {
    fn default() -> Self {
        Self::new(Arc::new(MemoryTicketStore::default()), TICKET_TTL)
    }
}

impl Tickets {
    pub fn new(store: Arc<dyn TicketStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    pub fn with_ttl(ttl: Duration) -> Self {
        Self::new(Arc::new(MemoryTicketStore::default()), ttl)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket for `caller`, with its scopes.
    pub async fn issue(&self, caller: &Caller) -> Result<String> {
        let ticket = format!("{PREFIX}{}", random_hex(32));
        let issued = IssuedTicket {
            caller: Caller {
                credential: CredentialKind::Ticket,
                ..caller.clone()
            },
            expires_at_ms: now_ms() + self.ttl.as_millis() as i64,
        };
        self.store
            .put(Sha256::digest(ticket.as_bytes()).into(), &issued)
            .await?;
        Ok(ticket)
    }

    /// The caller a ticket was issued to; the ticket is spent either way.
    pub async fn redeem(&self, ticket: &str) -> Result<std::result::Result<Caller, Refusal>> {
        let issued = self.store.take(Sha256::digest(ticket.as_bytes()).into()).await?;
        Ok(match issued {
            None => Err(Refusal::TicketUsed),
            Some(issued) if issued.expires_at_ms <= now_ms() => Err(Refusal::TicketExpired),
            Some(issued) => Ok(issued.caller),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Scope, Scopes};

    fn caller() -> Caller {
        Caller {
            name: "viewer".into(),
            key: "id-1".into(),
            scopes: Scopes::of(&[Scope::NotificationsRead]),
            credential: CredentialKind::Token,
        }
    }

    #[tokio::test]
    async fn a_ticket_is_good_once_with_its_tokens_scopes() {
        let tickets = Tickets::default();
        let ticket = tickets.issue(&caller()).await.unwrap();
        let redeemed = tickets.redeem(&ticket).await.unwrap().unwrap();
        assert_eq!(redeemed.name, "viewer");
        assert_eq!(redeemed.scopes, caller().scopes);
        assert_eq!(redeemed.credential, CredentialKind::Ticket);
        assert_eq!(tickets.redeem(&ticket).await.unwrap().unwrap_err(), Refusal::TicketUsed);
        assert_eq!(
            tickets.redeem("itk_forged").await.unwrap().unwrap_err(),
            Refusal::TicketUsed
        );
    }

    #[tokio::test]
    async fn an_expired_ticket_is_refused() {
        let tickets = Tickets::with_ttl(Duration::from_millis(1));
        let ticket = tickets.issue(&caller()).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            tickets.redeem(&ticket).await.unwrap().unwrap_err(),
            Refusal::TicketExpired
        );
    }

    #[tokio::test]
    async fn stores_keep_the_tickets_hash_never_the_ticket() {
        let kept = Arc::new(Mutex::new(None));
        let mut store = MockTicketStore::new();
        let seen = kept.clone();
        store.expect_put().returning(move |hash, issued| {
            *seen.lock().unwrap() = Some((hash, issued.caller.credential));
            Ok(())
        });
        let tickets = Tickets::new(Arc::new(store), TICKET_TTL);
        let ticket = tickets.issue(&caller()).await.unwrap();
        let (hash, credential) = kept.lock().unwrap().take().unwrap();
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(ticket.as_bytes())));
        assert_eq!(credential, CredentialKind::Ticket);
    }
}
