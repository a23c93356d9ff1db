//! Faults injected on purpose, so operators can see how the server and its monitoring behave
//! under trouble (the simulator drives this): for now, latency added to store reads.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The faults in force. Off unless the server was started to allow them.
#[derive(Default)]
pub struct Faults {
    store_latency: Mutex<Option<(Duration, Instant)>>,
}

/// A fault in force and how long it has left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActiveFault {
    pub store_latency: Duration,
    pub remaining: Duration,
}

impl Faults {
    /// Adds `latency` to every content read until `lasting` has passed (replacing any before).
    pub fn inject_store_latency(&self, latency: Duration, lasting: Duration) {
        *self.store_latency.lock().expect("not poisoned") = Some((latency, Instant::now() + lasting));
    }

    pub fn clear(&self) {
        *self.store_latency.lock().expect("not poisoned") = None;
    }

    pub fn active(&self) -> Option<ActiveFault> {
        let mut slot = self.store_latency.lock().expect("not poisoned");
        match *slot {
            Some((latency, until)) if until > Instant::now() => Some(ActiveFault {
                store_latency: latency,
                remaining: until - Instant::now(),
            }),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Waits out the store latency in force, if any.
    pub async fn delay_store_read(&self) {
        if let Some(fault) = self.active() {
            tokio::time::sleep(fault.store_latency).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn latency_applies_while_in_force_then_lapses() {
        let faults = Faults::default();
        assert!(faults.active().is_none());
        faults.inject_store_latency(Duration::from_millis(30), Duration::from_millis(200));
        let started = Instant::now();
        faults.delay_store_read().await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(faults.active().unwrap().store_latency, Duration::from_millis(30));
        faults.clear();
        assert!(faults.active().is_none());
        faults.inject_store_latency(Duration::from_millis(30), Duration::ZERO);
        assert!(faults.active().is_none(), "a fault whose time is up is gone");
    }
}
