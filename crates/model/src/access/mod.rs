//! Who may do what: scopes, the callers credentials prove, and the credentials themselves
//! (bearer tokens kept hashed, single-use tickets for browsers, JWTs of an identity provider).
//! Which route needs which scope is the controllers' policy table; this module knows no routes.

pub mod jwt;
pub mod scope;
pub mod tickets;
pub mod tokens;

pub use jwt::{JwtKey, JwtVerifier};
pub use scope::{Scope, Scopes};
pub use tickets::{IssuedTicket, MemoryTicketStore, TicketStore, Tickets};
pub use tokens::{
    IssuedToken, MemoryTokenRepository, NewToken, StoredToken, TokenRepository, TokenSecret, TokenService,
};

/// Who a request comes from, as its credential proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (or the JWT's subject): what audit lines and notifications name.
    pub name: String,
    /// What rate limits count against: the token's id, the JWT's subject.
    pub key: String,
    pub scopes: Scopes,
    pub credential: CredentialKind,
}

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    Token,
    Jwt,
    Ticket,
    /// Authentication is off: every caller may do everything (loopback only).
    AuthOff,
}

impl Caller {
    /// The caller of a server whose authentication is off.
    pub fn unauthenticated() -> Self {
        Self {
            name: "anonymous".into(),
            key: String::new(),
            scopes: Scopes::of(&[Scope::Admin]),
            credential: CredentialKind::AuthOff,
        }
    }

    pub fn may(&self, needed: Scope) -> bool {
        self.scopes.grants(needed)
    }
}

/// Why a credential was refused; each names its problem to the client (RFC 6750 `invalid_token`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no credential: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed credential: {0}")]
    Malformed(String),
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("ticket already used or unknown")]
    TicketUsed,
    #[error("ticket expired")]
    TicketExpired,
}

impl Refusal {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed(_) => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::TicketUsed => "ticket_used",
            Refusal::TicketExpired => "ticket_expired",
        }
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// `n` random bytes as hex, from the thread's generator (a CSPRNG seeded by the OS).
pub(crate) fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}
