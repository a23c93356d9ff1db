//! Bearer tokens of this server: `ist_<id>_<secret>`. Only the SHA-256 of the secret is stored;
//! a token is found by its id and its secret compared in constant time. Tokens are checked against
//! the store at most [`FRESH_FOR`] after it last said what it holds, so a revocation made by
//! another process (`ipfs-stream token revoke`) takes effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, CredentialKind, JwtVerifier, Refusal, Scopes, random_hex};
use crate::clock::now_ms;
use crate::error::{Error, Result};

/// How long a token read from the store is trusted before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// A token's last use is written at most this often (it is shown rounded to the minute).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Tokens kept in memory at most; past that the cache starts again (it only saves reads).
const CACHE_CAPACITY: usize = 10_000;
const PREFIX: &str = "ist_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A token as the store keeps it: everything but the secret, which is only hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub name: String,
    pub scopes: Scopes,
    pub secret_sha256: [u8; 32],
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl StoredToken {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|expiry| expiry <= now_ms)
    }
}

/// What a new token is given.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// A name for audits and `token ls`; `token-<id>` when none.
    pub name: Option<String>,
    pub scopes: Scopes,
    /// How long it stays valid; forever when none.
    pub ttl: Option<Duration>,
}

/// A token just made: the record, and the bearer string shown once and never again.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: StoredToken,
    pub bearer: String,
}

/// The parts of a bearer string of this server.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenSecret<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

impl<'a> TokenSecret<'a> {
    /// `Some` when `bearer` has the shape of one of our tokens (whether or not it exists).
    pub fn parse(bearer: &'a str) -> std::result::Result<Self, Refusal> {
        let rest = bearer
            .strip_prefix(PREFIX)
            .ok_or_else(|| Refusal::Malformed("not a token of this server (they start with ist_)".into()))?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or_else(|| Refusal::Malformed("a token is ist_<id>_<secret>".into()))?;
        let hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(id, ID_HEX) || !hex(secret, SECRET_HEX) {
            return Err(Refusal::Malformed(
                "a token is ist_<16 hex digits>_<64 hex digits>".into(),
            ));
        }
        Ok(Self { id, secret })
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

/// Where tokens are kept (SQLite in the persistence crate).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TokenRepository: Send + Sync {
    /// Stores a new token; a name already taken is [`Error::Conflict`].
    async fn insert(&self, token: &StoredToken) -> Result<()>;
    async fn find(&self, id: &str) -> Result<Option<StoredToken>>;
    /// Every token, revoked and expired ones included, oldest first.
    async fn list(&self) -> Result<Vec<StoredToken>>;
    /// Marks the token with this name or id revoked (once: a second revocation keeps the first
    /// time); `None` when there is no such token.
    async fn revoke(&self, name_or_id: &str, at_ms: i64) -> Result<Option<StoredToken>>;
    async fn touch(&self, id: &str, at_ms: i64) -> Result<()>;
    /// How many tokens exist, revoked ones included.
    async fn count(&self) -> Result<u64>;
}

/// Tokens in memory, for tests and the examples.
#[derive(Default)]
pub struct MemoryTokenRepository {
    tokens: Mutex<Vec<StoredToken>>,
}

#[async_trait]
impl TokenRepository for MemoryTokenRepository {
    async fn insert(&self, token: &StoredToken) -> Result<()> {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        if tokens.iter().any(|known| known.name == token.name) {
            return Err(Error::Conflict(format!("a token named {:?} exists", token.name)));
        }
        tokens.push(token.clone());
        Ok(())
    }

    async fn find(&self, id: &str) -> Result<Option<StoredToken>> {
        Ok(self
            .tokens
            .lock()
            .expect("tokens lock")
            .iter()
            .find(|t| t.id == id)
            .cloned())
    }

    async fn list(&self) -> Result<Vec<StoredToken>> {
        Ok(self.tokens.lock().expect("tokens lock").clone())
    }

    async fn revoke(&self, name_or_id: &str, at_ms: i64) -> Result<Option<StoredToken>> {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        let Some(token) = tokens.iter_mut().find(|t| t.name == name_or_id || t.id == name_or_id) else {
            return Ok(None);
        };
        token.revoked_at_ms.get_or_insert(at_ms);
        Ok(Some(token.clone()))
    }

    async fn touch(&self, id: &str, at_ms: i64) -> Result<()> {
        if let Some(token) = self.tokens.lock().expect("tokens lock").iter_mut().find(|t| t.id == id) {
            token.last_used_at_ms = Some(at_ms);
        }
        Ok(())
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.tokens.lock().expect("tokens lock").len() as u64)
    }
}

struct Cached {
    token: StoredToken,
    read_at: Instant,
    touched_at: Option<Instant>,
}

/// Makes, lists, revokes and checks credentials: this server's tokens and, when configured, the
/// JWTs of an identity provider.
pub struct TokenService {
    repository: Arc<dyn TokenRepository>,
    jwt: Option<JwtVerifier>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl TokenService {
    pub fn new(repository: Arc<dyn TokenRepository>) -> Self {
        Self {
            repository,
            jwt: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts JWTs this verifier accepts, beside the server's own tokens.
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// Makes a token; its bearer string is in the answer and nowhere else.
    pub async fn create(&self, new: NewToken) -> Result<IssuedToken> {
        if new.scopes.is_empty() {
            return Err(Error::InvalidOption {
                option: "scope",
                reason: "a token needs at least one scope".into(),
            });
        }
        let id = random_hex(ID_HEX / 2);
        let secret = random_hex(SECRET_HEX / 2);
        let name = new.name.unwrap_or_else(|| format!("token-{}", &id[..8]));
        validate_name(&name)?;
        let created_at_ms = now_ms();
        let expires_at_ms = new
            .ttl
            .map(|ttl| created_at_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)));
        let bearer = format!("{PREFIX}{id}_{secret}");
        let token = StoredToken {
            secret_sha256: TokenSecret {
                id: &id,
                secret: &secret,
            }
            .hash(),
            id,
            name,
            scopes: new.scopes,
            created_at_ms,
            expires_at_ms,
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        self.repository.insert(&token).await?;
        Ok(IssuedToken { token, bearer })
    }

    /// Makes an `admin` token named `admin` when no token was ever made; `None` otherwise.
    pub async fn first_admin(&self) -> Result<Option<IssuedToken>> {
        if self.repository.count().await? > 0 {
            return Ok(None);
        }
        self.create(NewToken {
            name: Some("admin".into()),
            scopes: Scopes::of(&[super::Scope::Admin]),
            ttl: None,
        })
        .await
        .map(Some)
    }

    pub async fn list(&self) -> Result<Vec<StoredToken>> {
        self.repository.list().await
    }

    /// Revokes the token with this name or id; it is refused from now on (by other processes
    /// within [`FRESH_FOR`]).
    pub async fn revoke(&self, name_or_id: &str) -> Result<StoredToken> {
        let revoked = self
            .repository
            .revoke(name_or_id, now_ms())
            .await?
            .ok_or_else(|| Error::UnknownId {
                kind: "token",
                id: name_or_id.to_owned(),
            })?;
        self.cache.lock().expect("token cache lock").remove(&revoked.id);
        Ok(revoked)
    }

    /// Who `bearer` proves the caller is. The outer error is the store's; the inner, why the
    /// credential was refused.
    pub async fn authenticate(&self, bearer: &str) -> Result<std::result::Result<Caller, Refusal>> {
        if bearer.is_empty() {
            return Ok(Err(Refusal::Missing));
        }
        if let Some(jwt) = &self.jwt
            && !bearer.starts_with(PREFIX)
            && bearer.bytes().filter(|b| *b == b'.').count() == 2
        {
            return Ok(jwt.verify(bearer));
        }
        let parsed = match TokenSecret::parse(bearer) {
            Ok(parsed) => parsed,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some((token, touch)) = self.lookup(parsed.id).await? else {
            return Ok(Err(Refusal::Unknown));
        };
        // Constant time: how much of a guessed secret matched must not show in the answer's time.
        if !bool::from(parsed.hash().ct_eq(&token.secret_sha256)) {
            return Ok(Err(Refusal::Unknown));
        }
        if token.revoked_at_ms.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        let now = now_ms();
        if token.is_expired(now) {
            return Ok(Err(Refusal::Expired));
        }
        if touch {
            let repository = self.repository.clone();
            let id = token.id.clone();
            tokio::spawn(async move {
                if let Err(error) = repository.touch(&id, now).await {
                    tracing::warn!(%error, "token last use not recorded");
                }
            });
        }
        Ok(Ok(Caller {
            name: token.name,
            key: token.id,
            scopes: token.scopes,
            credential: CredentialKind::Token,
        }))
    }

    /// The name of the token `bearer` is, even when it is refused (revoked, expired): audits name
    /// it. `None` for a bearer that is no token of this server.
    pub async fn holder(&self, bearer: &str) -> Option<String> {
        let parsed = TokenSecret::parse(bearer).ok()?;
        let (token, _) = self.lookup(parsed.id).await.ok()??;
        bool::from(parsed.hash().ct_eq(&token.secret_sha256)).then_some(token.name)
    }

    /// The token with this id, from the cache while fresh; and whether its last use is due to be
    /// written.
    async fn lookup(&self, id: &str) -> Result<Option<(StoredToken, bool)>> {
        {
            let mut cache = self.cache.lock().expect("token cache lock");
            if let Some(cached) = cache.get_mut(id)
                && cached.read_at.elapsed() < FRESH_FOR
            {
                let touch = cached.touched_at.is_none_or(|at| at.elapsed() >= TOUCH_EVERY);
                if touch {
                    cached.touched_at = Some(Instant::now());
                }
                return Ok(Some((cached.token.clone(), touch)));
            }
        }
        let Some(token) = self.repository.find(id).await? else {
            self.cache.lock().expect("token cache lock").remove(id);
            return Ok(None);
        };
        let mut cache = self.cache.lock().expect("token cache lock");
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        let touched_at = cache.get(id).and_then(|cached| cached.touched_at);
        let touch = touched_at.is_none_or(|at| at.elapsed() >= TOUCH_EVERY);
        cache.insert(
            id.to_owned(),
            Cached {
                token: token.clone(),
                read_at: Instant::now(),
                touched_at: if touch { Some(Instant::now()) } else { touched_at },
            },
        );
        Ok(Some((token, touch)))
    }
}

/// A name is 1 to 64 letters, digits, `.`, `_` or `-`: it appears in logs and on the command line.
fn validate_name(name: &str) -> Result<()> {
    let fits = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fits {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "name",
            reason: format!("{name:?}: 1 to 64 letters, digits, '.', '_' or '-'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Scope;

    fn service() -> (TokenService, Arc<MemoryTokenRepository>) {
        let repository = Arc::new(MemoryTokenRepository::default());
        (TokenService::new(repository.clone()), repository)
    }

    fn reader() -> NewToken {
        NewToken {
            name: Some("reader".into()),
            scopes: Scopes::of(&[Scope::ContentRead]),
            ttl: None,
        }
    }

    #[tokio::test]
    async fn a_created_token_authenticates_with_its_name_and_scopes() {
        let (tokens, repository) = service();
        let issued = tokens.create(reader()).await.unwrap();
        assert!(TokenSecret::parse(&issued.bearer).is_ok());
        let caller = tokens.authenticate(&issued.bearer).await.unwrap().unwrap();
        assert_eq!(caller.name, "reader");
        assert!(caller.may(Scope::ContentRead) && !caller.may(Scope::ContentWrite));
        // The store holds the hash, never the secret.
        let stored = repository.list().await.unwrap().remove(0);
        assert!(!issued.bearer.contains(&crate::access::hex(&stored.secret_sha256)));
    }

    #[tokio::test]
    async fn refusals_name_their_reason() {
        let (tokens, repository) = service();
        let issued = tokens.create(reader()).await.unwrap();
        let refused = |bearer: String| {
            let tokens = &tokens;
            async move { tokens.authenticate(&bearer).await.unwrap().unwrap_err() }
        };
        assert_eq!(refused(String::new()).await, Refusal::Missing);
        assert!(matches!(refused("hello".into()).await, Refusal::Malformed(_)));
        assert!(matches!(refused("ist_12_34".into()).await, Refusal::Malformed(_)));
        let unknown_id = format!("ist_{}_{}", "0".repeat(16), "1".repeat(64));
        assert_eq!(refused(unknown_id).await, Refusal::Unknown);
        let (id, _) = issued.bearer[4..].split_once('_').unwrap();
        let wrong_secret = format!("ist_{id}_{}", "1".repeat(64));
        assert_eq!(refused(wrong_secret).await, Refusal::Unknown);

        tokens.revoke("reader").await.unwrap();
        assert_eq!(refused(issued.bearer.clone()).await, Refusal::Revoked);
        assert_eq!(tokens.holder(&issued.bearer).await.as_deref(), Some("reader"));

        let expiring = tokens
            .create(NewToken {
                name: Some("brief".into()),
                ttl: Some(Duration::from_millis(1)),
                ..reader()
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(refused(expiring.bearer).await, Refusal::Expired);
        assert_eq!(repository.count().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_revocation_by_another_process_takes_effect_within_a_second() {
        let (tokens, repository) = service();
        let issued = tokens.create(reader()).await.unwrap();
        assert!(tokens.authenticate(&issued.bearer).await.unwrap().is_ok());
        // Another process writes the store directly: this one's cache does not know.
        repository.revoke("reader", now_ms()).await.unwrap();
        tokio::time::sleep(FRESH_FOR + Duration::from_millis(50)).await;
        assert_eq!(
            tokens.authenticate(&issued.bearer).await.unwrap().unwrap_err(),
            Refusal::Revoked
        );
    }

    #[tokio::test]
    async fn names_are_unique_and_checked_and_scopes_required() {
        let (tokens, _) = service();
        tokens.create(reader()).await.unwrap();
        assert!(matches!(tokens.create(reader()).await, Err(Error::Conflict(_))));
        let bad_name = NewToken {
            name: Some("two words".into()),
            ..reader()
        };
        assert!(matches!(
            tokens.create(bad_name).await,
            Err(Error::InvalidOption { option: "name", .. })
        ));
        let no_scope = NewToken {
            name: None,
            ..Default::default()
        };
        assert!(matches!(
            tokens.create(no_scope).await,
            Err(Error::InvalidOption { option: "scope", .. })
        ));
        assert!(matches!(
            tokens.revoke("nobody").await,
            Err(Error::UnknownId { kind: "token", .. })
        ));
    }

    #[tokio::test]
    async fn the_first_admin_token_is_made_once() {
        let (tokens, _) = service();
        let admin = tokens.first_admin().await.unwrap().expect("no token yet");
        assert_eq!(admin.token.name, "admin");
        assert!(admin.token.scopes.contains(Scope::Admin));
        assert!(tokens.first_admin().await.unwrap().is_none());
    }
}
