//! Single-use tickets: browsers cannot put a header on a WebSocket upgrade or an EventSource, so a
//! page trades its bearer token for a ticket, valid [`TICKET_TTL`], good for one such request and
//! carrying the token's scopes. A ticket in a URL may be logged by a proxy; it is worthless once
//! used or expired, which a token is not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Caller, CredentialKind, Refusal, random_hex};

/// How long a ticket stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets at most; past that, expired ones are swept first.
const SWEEP_ABOVE: usize = 1024;
const PREFIX: &str = "itk_";

struct Issued {
    caller: Caller,
    expires: Instant,
}

/// Tickets issued and not yet used, in this process.
pub struct Tickets {
    issued: Mutex<HashMap<String, Issued>>,
    ttl: Duration,
}

impl Default for Tickets {
    fn default() -> Self {
        Self::with_ttl(TICKET_TTL)
    }
}

impl Tickets {
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            issued: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket for `caller`, with its scopes.
    pub fn issue(&self, caller: &Caller) -> String {
        let ticket = format!("{PREFIX}{}", random_hex(32));
        let now = Instant::now();
        let mut issued = self.issued.lock().expect("tickets lock");
        if issued.len() >= SWEEP_ABOVE {
            issued.retain(|_, ticket| ticket.expires > now);
        }
        let caller = Caller {
            credential: CredentialKind::Ticket,
            ..caller.clone()
        };
        issued.insert(
            ticket.clone(),
            Issued {
                caller,
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// The caller a ticket was issued to; the ticket is spent either way.
    pub fn redeem(&self, ticket: &str) -> Result<Caller, Refusal> {
        let issued = self.issued.lock().expect("tickets lock").remove(ticket);
        match issued {
            None => Err(Refusal::TicketUsed),
            Some(issued) if issued.expires <= Instant::now() => Err(Refusal::TicketExpired),
            Some(issued) => Ok(issued.caller),
        }
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

    #[test]
    fn a_ticket_is_good_once_with_its_tokens_scopes() {
        let tickets = Tickets::default();
        let ticket = tickets.issue(&caller());
        let redeemed = tickets.redeem(&ticket).unwrap();
        assert_eq!(redeemed.name, "viewer");
        assert_eq!(redeemed.scopes, caller().scopes);
        assert_eq!(redeemed.credential, CredentialKind::Ticket);
        assert_eq!(tickets.redeem(&ticket).unwrap_err(), Refusal::TicketUsed);
        assert_eq!(tickets.redeem("itk_forged").unwrap_err(), Refusal::TicketUsed);
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let tickets = Tickets::with_ttl(Duration::from_millis(1));
        let ticket = tickets.issue(&caller());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tickets.redeem(&ticket).unwrap_err(), Refusal::TicketExpired);
    }
}
