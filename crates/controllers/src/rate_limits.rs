//! Limits per caller: token buckets (governor) per token, or per client address for anonymous
//! requests, on requests and on new WebRTC sessions. A refused request gets 429 and
//! `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Buckets = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

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
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when the caller is over its rate (or, for a new session, its session rate).
    pub fn check(&self, key: RateKey<'_>, new_session: bool) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for buckets in [&self.per_token, &self.anonymous, &self.sessions].into_iter().flatten() {
                buckets.retain_recent();
                buckets.shrink_to_fit();
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
    fn zero_means_no_limit() {
        let limits = RateLimits::new(&RateSettings::unlimited());
        for _ in 0..10_000 {
            assert!(limits.check(RateKey::Caller("a"), true).is_ok());
        }
    }
}
