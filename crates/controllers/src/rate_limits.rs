//! Limits per caller: token buckets (governor) per token, or per client address for anonymous
//! requests, on requests and on new WebRTC sessions. A refused request gets 429 and
//! `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Buckets = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Refused credentials an address may present per second (and at once) before its next ones are
/// refused unread: each one costs a lookup in the token store.
const FAILURES_PER_SECOND: u32 = 10;
const FAILURE_BURST: u32 = 50;
/// How long an address that went past that is refused.
const FAILURE_PENALTY: Duration = Duration::from_secs(10);

/// A caller over its rate waits this long for its 429 (the least `Retry-After` can say): a client
/// flooding over a few connections then sends a few requests a second, not thousands of refusals
/// that each cost the server as much as an answer.
const HOLD: Duration = Duration::from_secs(1);
/// Refusals held at once at most; past that they are answered at once (held ones keep a
/// connection each).
const HOLD_SLOTS: usize = 4096;

/// Checks between two sweeps of buckets that are full again (so that the key map does not grow
/// with every address ever seen).
const SWEEP_EVERY: u64 = 8192;

/// The rates, each 0 for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSettings {
    /// Requests per second of one token (or JWT subject).
    pub per_token: u32,
    /// Requests per second of one client address without a credential.
    pub anonymous: u32,
    /// Requests a caller may make at once above its rate.
    pub burst: u32,
    /// New WebRTC sessions per minute of one caller.
    pub sessions_per_minute: u32,
}

impl Default for RateSettings {
    fn default() -> Self {
        Self {
            per_token: 1000,
            anonymous: 200,
            burst: 400,
            sessions_per_minute: 60,
        }
    }
}

impl RateSettings {
    pub fn unlimited() -> Self {
        Self {
            per_token: 0,
            anonymous: 0,
            burst: 0,
            sessions_per_minute: 0,
        }
    }
}

/// Who a limit counts against.
pub enum RateKey<'a> {
    Caller(&'a str),
    Address(IpAddr),
}

/// The buckets of one server.
pub struct RateLimits {
    per_token: Option<Buckets>,
    anonymous: Option<Buckets>,
    sessions: Option<Buckets>,
    /// Off with the anonymous limit (`anonymous = 0`).
    failures: Option<RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>>,
    /// Addresses refused unread until the instant given.
    penalized: Mutex<HashMap<IpAddr, Instant>>,
    held: AtomicUsize,
    checks: AtomicU64,
}

fn buckets(quota: Option<Quota>) -> Option<Buckets> {
    quota.map(RateLimiter::keyed)
}

fn per_second(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

impl RateLimits {
    pub fn new(settings: &RateSettings) -> Self {
        Self {
            per_token: buckets(per_second(settings.per_token, settings.burst.max(settings.per_token))),
            anonymous: buckets(per_second(settings.anonymous, settings.burst.max(settings.anonymous))),
            sessions: buckets(NonZeroU32::new(settings.sessions_per_minute).map(Quota::per_minute)),
            failures: (settings.anonymous > 0).then(|| {
                RateLimiter::keyed(
                    Quota::per_second(NonZeroU32::new(FAILURES_PER_SECOND).expect("non-zero"))
                        .allow_burst(NonZeroU32::new(FAILURE_BURST).expect("non-zero")),
                )
            }),
            penalized: Mutex::new(HashMap::new()),
            held: AtomicUsize::new(0),
            checks: AtomicU64::new(0),
        }
    }

    /// Holds a refused caller for [`HOLD`] before it gets its 429, while fewer than
    /// [`HOLD_SLOTS`] are held.
    pub async fn hold(&self) {
        if self.held.fetch_add(1, Ordering::Relaxed) < HOLD_SLOTS {
            tokio::time::sleep(HOLD).await;
        }
        self.held.fetch_sub(1, Ordering::Relaxed);
    }

    /// `Err(wait)` while `address` may not present credentials: it presented too many refused
    /// ones lately.
    pub fn credentials_allowed(&self, address: IpAddr) -> Result<(), Duration> {
        let penalized = self.penalized.lock().expect("penalized lock");
        match penalized.get(&address) {
            Some(until) if *until > Instant::now() => Err(*until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Counts a refused credential from `address`; past the allowance the address is refused
    /// unread for a while.
    pub fn credential_refused(&self, address: IpAddr) {
        if self
            .failures
            .as_ref()
            .is_some_and(|failures| failures.check_key(&address).is_err())
        {
            let mut penalized = self.penalized.lock().expect("penalized lock");
            let now = Instant::now();
            penalized.retain(|_, until| *until > now);
            penalized.insert(address, now + FAILURE_PENALTY);
        }
    }

    /// `Err(wait)` when the caller is over its rate (or, for a new session, its session rate).
    pub fn check(&self, key: RateKey<'_>, new_session: bool) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for buckets in [&self.per_token, &self.anonymous, &self.sessions].into_iter().flatten() {
                buckets.retain_recent();
                buckets.shrink_to_fit();
            }
            if let Some(failures) = &self.failures {
                failures.retain_recent();
                failures.shrink_to_fit();
            }
        }
        let (buckets, key) = match key {
            RateKey::Caller(key) => (&self.per_token, key.to_owned()),
            RateKey::Address(address) => (&self.anonymous, address.to_string()),
        };
        let wait = |buckets: &Option<Buckets>| -> Result<(), Duration> {
            match buckets {
                Some(buckets) => buckets
                    .check_key(&key)
                    .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
                None => Ok(()),
            }
        };
        wait(buckets)?;
        if new_session {
            wait(&self.sessions)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_burst_waits_and_others_do_not() {
        let limits = RateLimits::new(&RateSettings {
            per_token: 1,
            anonymous: 1,
            burst: 3,
            sessions_per_minute: 1,
        });
        for _ in 0..3 {
            assert!(limits.check(RateKey::Caller("a"), false).is_ok());
        }
        let wait = limits.check(RateKey::Caller("a"), false).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check(RateKey::Caller("b"), false).is_ok());
        let address = RateKey::Address(IpAddr::from([127, 0, 0, 1]));
        assert!(limits.check(address, true).is_ok());
        // One new session a minute: the second is refused though requests remain.
        let address = RateKey::Address(IpAddr::from([127, 0, 0, 1]));
        assert!(limits.check(address, true).unwrap_err() > Duration::from_secs(1));
    }

    #[test]
    fn an_address_presenting_many_refused_credentials_is_refused_unread() {
        let limits = RateLimits::new(&RateSettings::default());
        let address = IpAddr::from([10, 0, 0, 9]);
        for _ in 0..FAILURE_BURST {
            limits.credential_refused(address);
        }
        assert!(limits.credentials_allowed(address).is_ok());
        limits.credential_refused(address);
        let wait = limits.credentials_allowed(address).unwrap_err();
        assert!(wait > Duration::from_secs(5) && wait <= FAILURE_PENALTY, "{wait:?}");
        assert!(limits.credentials_allowed(IpAddr::from([10, 0, 0, 10])).is_ok());
        let unlimited = RateLimits::new(&RateSettings::unlimited());
        for _ in 0..=FAILURE_BURST {
            unlimited.credential_refused(address);
        }
        assert!(unlimited.credentials_allowed(address).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = RateLimits::new(&RateSettings::unlimited());
        for _ in 0..10_000 {
            assert!(limits.check(RateKey::Caller("a"), true).is_ok());
        }
    }
}
