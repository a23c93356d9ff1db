//! Caps on the connections an address, and everyone together, may hold open. A connection over a
//! cap is closed as soon as it is accepted (under TLS, once its handshake is done), before a byte
//! of a request is read, so holding sockets open
//! (slow headers, idle keep-alives, WebSockets) costs an attacker the cap and nothing more. IPv6
//! addresses count by their /64: one host is usually given a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many connections may be open at once; 0 means no cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub per_address: u32,
    pub total: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            per_address: 256,
            total: 10_000,
        }
    }
}

/// Why a connection was closed on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverCap {
    /// Its address (or /64) already holds `per_address` connections.
    PerAddress,
    /// The server already holds `total` connections.
    Total,
}

impl OverCap {
    pub fn as_str(self) -> &'static str {
        match self {
            OverCap::PerAddress => "per_address",
            OverCap::Total => "total",
        }
    }
}

/// Counts open connections by address and admits new ones under the caps.
#[derive(Debug, Default)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    open: Mutex<Open>,
    refused_per_address: AtomicU64,
    refused_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// What `/metrics` reports of the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub open: u32,
    pub refused_per_address: u64,
    pub refused_total: u64,
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            ..Self::default()
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// A place for a connection from `peer`, held until the slot is dropped (with the
    /// connection), or the cap it would pass.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, OverCap> {
        let address = counted_address(peer);
        let mut open = self.open.lock().expect("not poisoned");
        if self.limits.total != 0 && open.total >= self.limits.total {
            drop(open);
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(OverCap::Total);
        }
        let held = open.by_address.entry(address).or_insert(0);
        if self.limits.per_address != 0 && *held >= self.limits.per_address {
            drop(open);
            self.refused_per_address.fetch_add(1, Ordering::Relaxed);
            return Err(OverCap::PerAddress);
        }
        *held += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            gate: self.clone(),
            address,
        })
    }

    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.open.lock().expect("not poisoned").total,
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
            refused_total: self.refused_total.load(Ordering::Relaxed),
        }
    }

    fn release(&self, address: IpAddr) {
        let mut open = self.open.lock().expect("not poisoned");
        open.total -= 1;
        if let Some(held) = open.by_address.get_mut(&address) {
            *held -= 1;
            if *held == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

/// IPv4 (and IPv4-mapped IPv6) as it is; other IPv6 by its /64.
fn counted_address(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// A connection's place under the caps; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.gate.release(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back_as_connections_close() {
        let gate = ConnectionGate::new(ConnectionLimits {
            per_address: 2,
            total: 0,
        });
        let first = gate.admit(ip("10.0.0.1")).unwrap();
        let _second = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), OverCap::PerAddress);
        let _other = gate.admit(ip("10.0.0.2")).expect("other addresses have their own cap");
        drop(first);
        let _again = gate.admit(ip("10.0.0.1")).expect("a closed connection frees its slot");
        assert_eq!(
            gate.counts(),
            ConnectionCounts {
                open: 3,
                refused_per_address: 1,
                refused_total: 0
            }
        );
    }

    #[test]
    fn the_total_cap_holds_across_addresses() {
        let gate = ConnectionGate::new(ConnectionLimits {
            per_address: 0,
            total: 2,
        });
        let _a = gate.admit(ip("10.0.0.1")).unwrap();
        let b = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), OverCap::Total);
        drop(b);
        assert!(gate.admit(ip("10.0.0.3")).is_ok());
        assert_eq!(gate.counts().refused_total, 1);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let gate = ConnectionGate::new(ConnectionLimits {
            per_address: 1,
            total: 0,
        });
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            OverCap::PerAddress,
            "same /64"
        );
        assert!(gate.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _v4 = gate.admit(ip("192.0.2.7")).unwrap();
        assert_eq!(gate.admit(ip("::ffff:192.0.2.7")).unwrap_err(), OverCap::PerAddress);
    }
}
