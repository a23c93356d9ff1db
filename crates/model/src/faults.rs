//! Faults injected on purpose, so operators can see how the server, its playback buffers and its
//! monitoring behave under trouble (the simulator and the playback benchmark drive this): store
//! reads delayed by a fixed latency, by random jitter on top, and stalled now and then.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// A store that stalls: every `every`, reads wait out the last `length` of the period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stalls {
    pub every: Duration,
    pub length: Duration,
}

/// How store reads are slowed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreFault {
    /// Added to every read.
    pub latency: Duration,
    /// Up to this much more, drawn per read.
    pub jitter: Duration,
    pub stalls: Option<Stalls>,
}

#[derive(Clone, Copy)]
struct InForce {
    fault: StoreFault,
    since: Instant,
    until: Instant,
}

/// The faults in force. Off unless the server was started to allow them.
#[derive(Default)]
pub struct Faults {
    store: Mutex<Option<InForce>>,
}

/// A fault in force and how long it has left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActiveFault {
    pub store_latency: Duration,
    pub store_jitter: Duration,
    pub stalls: Option<Stalls>,
    pub remaining: Duration,
}

impl Faults {
    /// Slows every content read as `fault` says until `lasting` has passed (replacing any
    /// before); its stalls count from now.
    pub fn inject_store_fault(&self, fault: StoreFault, lasting: Duration) {
        let now = Instant::now();
        *self.store.lock().expect("not poisoned") = Some(InForce {
            fault,
            since: now,
            until: now + lasting,
        });
    }

    pub fn clear(&self) {
        *self.store.lock().expect("not poisoned") = None;
    }

    fn in_force(&self) -> Option<InForce> {
        let mut slot = self.store.lock().expect("not poisoned");
        match *slot {
            Some(in_force) if in_force.until > Instant::now() => Some(in_force),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    pub fn active(&self) -> Option<ActiveFault> {
        self.in_force().map(|in_force| ActiveFault {
            store_latency: in_force.fault.latency,
            store_jitter: in_force.fault.jitter,
            stalls: in_force.fault.stalls,
            remaining: in_force.until.saturating_duration_since(Instant::now()),
        })
    }

    /// Waits out the store fault in force, if any.
    pub async fn delay_store_read(&self) {
        let Some(in_force) = self.in_force() else {
            return;
        };
        let delay = in_force.fault.latency + stall_left(&in_force, Instant::now()) + draw(in_force.fault.jitter);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

fn draw(jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_micros(rand::rng().random_range(0..=jitter.as_micros() as u64))
}

/// What is left of the stall in progress at `now`, if one is.
fn stall_left(in_force: &InForce, now: Instant) -> Duration {
    let Some(stalls) = in_force.fault.stalls.filter(|s| !s.every.is_zero()) else {
        return Duration::ZERO;
    };
    let into_period =
        Duration::from_nanos((now.duration_since(in_force.since).as_nanos() % stalls.every.as_nanos()) as u64);
    let stall_starts = stalls.every.saturating_sub(stalls.length);
    if into_period >= stall_starts {
        stalls.every - into_period
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(latency: Duration) -> StoreFault {
        StoreFault {
            latency,
            ..StoreFault::default()
        }
    }

    #[tokio::test]
    async fn latency_applies_while_in_force_then_lapses() {
        let faults = Faults::default();
        assert!(faults.active().is_none());
        faults.inject_store_fault(latency(Duration::from_millis(30)), Duration::from_millis(200));
        let started = Instant::now();
        faults.delay_store_read().await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(faults.active().unwrap().store_latency, Duration::from_millis(30));
        faults.clear();
        assert!(faults.active().is_none());
        faults.inject_store_fault(latency(Duration::from_millis(30)), Duration::ZERO);
        assert!(faults.active().is_none(), "a fault whose time is up is gone");
    }

    #[test]
    fn a_stall_holds_reads_to_the_end_of_its_period() {
        let since = Instant::now();
        let in_force = InForce {
            fault: StoreFault {
                stalls: Some(Stalls {
                    every: Duration::from_secs(60),
                    length: Duration::from_secs(2),
                }),
                ..StoreFault::default()
            },
            since,
            until: since + Duration::from_secs(600),
        };
        let at = |seconds: f64| stall_left(&in_force, since + Duration::from_secs_f64(seconds));
        assert_eq!(at(10.0), Duration::ZERO);
        assert_eq!(at(58.5), Duration::from_millis(1500));
        assert_eq!(at(61.0), Duration::ZERO);
        assert_eq!(at(119.0), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn jitter_varies_the_delay_within_its_bound() {
        let faults = Faults::default();
        faults.inject_store_fault(
            StoreFault {
                jitter: Duration::from_millis(20),
                ..StoreFault::default()
            },
            Duration::from_secs(10),
        );
        let mut delays = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            faults.delay_store_read().await;
            delays.push(started.elapsed());
        }
        assert!(delays.iter().all(|d| *d < Duration::from_millis(200)), "{delays:?}");
        let (shortest, longest) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
        assert!(*longest - *shortest >= Duration::from_millis(5), "{delays:?}");
    }
}
