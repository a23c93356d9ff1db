//! A bad network in user space, for measuring playback where no kernel netem is at hand: a UDP
//! relay on loopback that a WebRTC receiver and the server talk through. The receiver is told the
//! relay's port instead of the server's (its copy of the answer is rewritten, [`route_answer`]),
//! and the server is told no candidate of the receiver's ([`without_candidates`]), so the only
//! path either side finds goes through the relay.
//!
//! What the server sends (downstream) meets, in this order: random loss, bursty loss
//! (Gilbert-Elliott), a bandwidth cap with a drop-tail queue, one-way delay with jitter, and
//! reordering. What the receiver sends (upstream: ICE, DTLS, RTCP feedback) meets the delay and
//! jitter, and its own random loss. Every draw comes from one seeded generator per link, so a run
//! loses the same packets when its traffic is the same.

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Bursty loss after Gilbert-Elliott: a "good" state that loses nothing and a "bad" one that
/// loses every packet, with bursts `mean_burst` packets long on average and `loss` of all packets
/// lost in the long run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstLoss {
    pub loss: f64,
    pub mean_burst: f64,
}

impl BurstLoss {
    /// The chances, per packet, of going from good to bad and from bad to good.
    fn transitions(&self) -> (f64, f64) {
        let bad_to_good = 1.0 / self.mean_burst.max(1.0);
        let loss = self.loss.clamp(0.0, 0.99);
        (loss * bad_to_good / (1.0 - loss), bad_to_good)
    }
}

/// What a link does to the packets that cross it.
#[derive(Clone, Debug, PartialEq)]
pub struct Impairment {
    /// The chance that a downstream packet is lost.
    pub loss: f64,
    pub burst: Option<BurstLoss>,
    /// One-way delay, each way: the round trip is twice it.
    pub delay: Duration,
    /// Each packet's delay varies uniformly by up to this, either way (order kept: jitter alone
    /// does not reorder).
    pub jitter: Duration,
    /// Downstream bandwidth in bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// The longest a packet may wait in the cap's queue; one that would wait longer is dropped.
    pub queue: Duration,
    /// The chance that a downstream packet is held back by `reorder_by`, letting later ones pass.
    pub reorder: f64,
    pub reorder_by: Duration,
    /// The chance that an upstream packet is lost.
    pub upstream_loss: f64,
    /// Loss (random, bursty, upstream) takes only RTP and RTCP packets, never ICE or DTLS: for
    /// measuring the repair of media without a handshake that has to be retried first.
    pub spare_handshake: bool,
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue: Duration::from_millis(200),
            reorder: 0.0,
            reorder_by: Duration::from_millis(10),
            upstream_loss: 0.0,
            spare_handshake: false,
            seed: 1,
        }
    }
}

/// What a link did, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounts {
    pub downstream_packets: u64,
    pub downstream_bytes: u64,
    pub delivered_downstream: u64,
    pub lost_random: u64,
    pub lost_burst: u64,
    pub dropped_by_queue: u64,
    pub reordered: u64,
    pub upstream_packets: u64,
    pub delivered_upstream: u64,
    pub lost_upstream: u64,
}

impl std::ops::AddAssign for LinkCounts {
    fn add_assign(&mut self, other: Self) {
        self.downstream_packets += other.downstream_packets;
        self.downstream_bytes += other.downstream_bytes;
        self.delivered_downstream += other.delivered_downstream;
        self.lost_random += other.lost_random;
        self.lost_burst += other.lost_burst;
        self.dropped_by_queue += other.dropped_by_queue;
        self.reordered += other.reordered;
        self.upstream_packets += other.upstream_packets;
        self.delivered_upstream += other.delivered_upstream;
        self.lost_upstream += other.lost_upstream;
    }
}

/// A relay: one impairment, changeable while links run (a cap lifted mid-playback), and the links
/// opened through it.
#[derive(Clone, Default)]
pub struct Relay {
    impairment: Arc<Mutex<Impairment>>,
    links: Arc<Mutex<Vec<Link>>>,
}

impl Relay {
    pub fn new(impairment: Impairment) -> Self {
        Self {
            impairment: Arc::new(Mutex::new(impairment)),
            links: Arc::default(),
        }
    }

    /// Changes what every link does from now on.
    pub fn set(&self, change: impl FnOnce(&mut Impairment)) {
        change(&mut self.impairment.lock().expect("not poisoned"));
    }

    pub fn impairment(&self) -> Impairment {
        self.impairment.lock().expect("not poisoned").clone()
    }

    /// A link to `server` (a UDP address of the server's): its port on 127.0.0.1 is what the
    /// receiver is to send to. The link runs until the relay and every copy of it are dropped.
    pub async fn open(&self, server: SocketAddr) -> std::io::Result<Link> {
        let outer = UdpSocket::bind("127.0.0.1:0").await?;
        let inner = UdpSocket::bind("127.0.0.1:0").await?;
        inner.connect(server).await?;
        let seed = self.impairment().seed ^ u64::from(server.port());
        let link = Link {
            port: outer.local_addr()?.port(),
            counts: Arc::default(),
        };
        tokio::spawn(carry(
            outer,
            inner,
            Arc::downgrade(&self.impairment),
            link.counts.clone(),
            StdRng::seed_from_u64(seed),
        ));
        self.links.lock().expect("not poisoned").push(link.clone());
        Ok(link)
    }

    /// What every link did so far, added up.
    pub fn counts(&self) -> LinkCounts {
        let mut total = LinkCounts::default();
        for link in self.links.lock().expect("not poisoned").iter() {
            total += link.counts();
        }
        total
    }
}

/// One relayed path: a port for the receiver, and its counts.
#[derive(Clone)]
pub struct Link {
    pub port: u16,
    counts: Arc<Mutex<LinkCounts>>,
}

impl Link {
    pub fn counts(&self) -> LinkCounts {
        *self.counts.lock().expect("not poisoned")
    }
}

/// A packet on its way, due at `due`; `order` keeps packets due at once in arrival order.
struct InFlight {
    due: Instant,
    order: u64,
    downstream: bool,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so the heap gives the earliest first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// The state of one direction's schedule.
#[derive(Default)]
struct Lane {
    /// When the cap's line is free again.
    line_free: Option<Instant>,
    /// The latest due time given in order (jitter does not let a packet pass this).
    last_due: Option<Instant>,
    /// Gilbert-Elliott: in the bad state.
    in_burst: bool,
}

enum Fate {
    Lost(fn(&mut LinkCounts)),
    Due(Instant),
}

fn jittered(rng: &mut StdRng, delay: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let spread = jitter.as_secs_f64();
    Duration::from_secs_f64((delay.as_secs_f64() + rng.random_range(-spread..=spread)).max(0.0))
}

/// Whether a packet is RTP or RTCP: their first byte is 128 to 191 (RFC 7983), where STUN's is 0
/// to 3 and DTLS's 20 to 63.
fn is_media(packet: &[u8]) -> bool {
    packet.first().is_some_and(|first| (128..=191).contains(first))
}

/// Whether loss may take this packet.
fn losable(impairment: &Impairment, packet: &[u8]) -> bool {
    !impairment.spare_handshake || is_media(packet)
}

fn downstream_fate(rng: &mut StdRng, lane: &mut Lane, impairment: &Impairment, packet: &[u8], now: Instant) -> Fate {
    let size = packet.len();
    if let Some(burst) = impairment.burst.filter(|_| losable(impairment, packet)) {
        let (good_to_bad, bad_to_good) = burst.transitions();
        lane.in_burst = if lane.in_burst {
            !rng.random_bool(bad_to_good)
        } else {
            rng.random_bool(good_to_bad.clamp(0.0, 1.0))
        };
        if lane.in_burst {
            return Fate::Lost(|c| c.lost_burst += 1);
        }
    }
    if impairment.loss > 0.0 && losable(impairment, packet) && rng.random_bool(impairment.loss.clamp(0.0, 1.0)) {
        return Fate::Lost(|c| c.lost_random += 1);
    }
    let mut leaves = now;
    if let Some(rate) = impairment.rate_bps.filter(|rate| *rate > 0) {
        let start = lane.line_free.map_or(now, |free| free.max(now));
        if start - now > impairment.queue {
            return Fate::Lost(|c| c.dropped_by_queue += 1);
        }
        leaves = start + Duration::from_secs_f64(size as f64 * 8.0 / rate as f64);
        lane.line_free = Some(leaves);
    }
    let mut due = leaves + jittered(rng, impairment.delay, impairment.jitter);
    if impairment.reorder > 0.0 && rng.random_bool(impairment.reorder.clamp(0.0, 1.0)) {
        return Fate::Due(due.max(lane.last_due.unwrap_or(due)) + impairment.reorder_by);
    }
    due = due.max(lane.last_due.unwrap_or(due));
    lane.last_due = Some(due);
    Fate::Due(due)
}

fn upstream_fate(rng: &mut StdRng, lane: &mut Lane, impairment: &Impairment, packet: &[u8], now: Instant) -> Fate {
    if impairment.upstream_loss > 0.0
        && losable(impairment, packet)
        && rng.random_bool(impairment.upstream_loss.clamp(0.0, 1.0))
    {
        return Fate::Lost(|c| c.lost_upstream += 1);
    }
    let due = (now + jittered(rng, impairment.delay, impairment.jitter)).max(lane.last_due.unwrap_or(now));
    lane.last_due = Some(due);
    Fate::Due(due)
}

/// Carries one link's packets both ways until its relay is gone.
async fn carry(
    outer: UdpSocket,
    inner: UdpSocket,
    impairment: std::sync::Weak<Mutex<Impairment>>,
    counts: Arc<Mutex<LinkCounts>>,
    mut rng: StdRng,
) {
    let mut receiver: Option<SocketAddr> = None;
    let mut in_flight = BinaryHeap::<InFlight>::new();
    let (mut down, mut up) = (Lane::default(), Lane::default());
    let mut order = 0u64;
    let (mut from_receiver, mut from_server) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    let mut alive = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next_due = in_flight.peek().map(|packet| packet.due);
        let arrived = tokio::select! {
            received = outer.recv_from(&mut from_receiver) => match received {
                Ok((size, from)) => {
                    receiver = Some(from);
                    Some((false, from_receiver[..size].to_vec()))
                }
                Err(_) => None,
            },
            received = inner.recv(&mut from_server) => match received {
                Ok(size) => Some((true, from_server[..size].to_vec())),
                Err(_) => None,
            },
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)).await }, if next_due.is_some() => None,
            _ = alive.tick() => {
                if impairment.strong_count() == 0 {
                    return;
                }
                None
            }
        };
        let now = Instant::now();
        if let Some((downstream, bytes)) = arrived {
            let Some(impairment) = impairment.upgrade() else { return };
            let impairment = impairment.lock().expect("not poisoned").clone();
            let mut counts = counts.lock().expect("not poisoned");
            let fate = if downstream {
                counts.downstream_packets += 1;
                counts.downstream_bytes += bytes.len() as u64;
                downstream_fate(&mut rng, &mut down, &impairment, &bytes, now)
            } else {
                counts.upstream_packets += 1;
                upstream_fate(&mut rng, &mut up, &impairment, &bytes, now)
            };
            match fate {
                Fate::Lost(count) => count(&mut counts),
                Fate::Due(due) => {
                    if downstream && down.last_due.is_some_and(|last| due > last) {
                        counts.reordered += 1;
                    }
                    order += 1;
                    in_flight.push(InFlight {
                        due,
                        order,
                        downstream,
                        bytes,
                    });
                }
            }
        }
        let (mut delivered_down, mut delivered_up) = (0, 0);
        while in_flight.peek().is_some_and(|packet| packet.due <= now) {
            let packet = in_flight.pop().expect("peeked");
            if packet.downstream {
                if let Some(to) = receiver
                    && outer.send_to(&packet.bytes, to).await.is_ok()
                {
                    delivered_down += 1;
                }
            } else if inner.send(&packet.bytes).await.is_ok() {
                delivered_up += 1;
            }
        }
        if delivered_down + delivered_up > 0 {
            let mut counts = counts.lock().expect("not poisoned");
            counts.delivered_downstream += delivered_down;
            counts.delivered_upstream += delivered_up;
        }
    }
}

/// `offer` with its ICE candidates taken out, so the server learns the receiver's address only
/// from the relay's checks.
pub fn without_candidates(offer: &str) -> String {
    offer
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("a=candidate:") && !line.starts_with("a=end-of-candidates"))
        .collect()
}

/// The server's UDP host candidate in `answer`, its address.
pub fn server_address(answer: &str) -> Option<SocketAddr> {
    answer.lines().find_map(|line| {
        let fields: Vec<&str> = line.strip_prefix("a=candidate:")?.split_whitespace().collect();
        let udp = fields.get(2)?.eq_ignore_ascii_case("udp");
        let host = fields.windows(2).any(|pair| pair == ["typ", "host"]);
        (udp && host).then(|| format!("{}:{}", fields.get(4)?, fields.get(5)?).parse().ok())?
    })
}

/// `answer` naming `port` on 127.0.0.1 as the server's only candidate.
pub fn route_answer(answer: &str, port: u16) -> String {
    let mut routed = String::with_capacity(answer.len());
    let mut named = false;
    for line in answer.split_inclusive('\n') {
        if line.starts_with("a=candidate:") {
            if !named {
                let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
                routed.push_str(&format!(
                    "a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host{ending}"
                ));
                named = true;
            }
            continue;
        }
        routed.push_str(line);
    }
    routed
}

/// Opens a link for the server candidate of `answer` and returns the answer routed through it.
pub async fn route_through(relay: &Relay, answer: &str) -> std::io::Result<(String, Link)> {
    let server = server_address(answer)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no UDP host candidate in the answer"))?;
    let link = relay.open(server).await?;
    Ok((route_answer(answer, link.port), link))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
        a=candidate:3 1 udp 2130706431 127.0.0.1 40001 typ host\r\n\
        a=candidate:4 1 tcp 1 127.0.0.1 9 typ host tcptype active\r\na=end-of-candidates\r\n";

    #[test]
    fn the_answer_names_the_relay_alone() {
        assert_eq!(server_address(ANSWER), Some("127.0.0.1:40001".parse().unwrap()));
        let routed = route_answer(ANSWER, 5000);
        assert!(routed.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"));
        assert_eq!(routed.matches("a=candidate:").count(), 1);
        assert!(
            without_candidates(ANSWER)
                .lines()
                .all(|l| !l.starts_with("a=candidate"))
        );
        assert!(without_candidates(ANSWER).contains("a=mid:0\r\n"));
    }

    fn lost_share(impairment: &Impairment, packets: usize) -> (f64, usize) {
        let mut rng = StdRng::seed_from_u64(impairment.seed);
        let mut lane = Lane::default();
        let now = Instant::now();
        let (mut lost, mut bursts, mut previous_lost) = (0, 0, false);
        for _ in 0..packets {
            let is_lost = matches!(
                downstream_fate(&mut rng, &mut lane, impairment, &[0x80; 1200], now),
                Fate::Lost(_)
            );
            lost += usize::from(is_lost);
            bursts += usize::from(is_lost && !previous_lost);
            previous_lost = is_lost;
        }
        (lost as f64 / packets as f64, bursts)
    }

    #[test]
    fn random_and_bursty_loss_lose_their_share() {
        let (share, _) = lost_share(
            &Impairment {
                loss: 0.05,
                ..Default::default()
            },
            100_000,
        );
        assert!((share - 0.05).abs() < 0.005, "{share}");
        let (share, bursts) = lost_share(
            &Impairment {
                burst: Some(BurstLoss {
                    loss: 0.05,
                    mean_burst: 5.0,
                }),
                ..Default::default()
            },
            100_000,
        );
        assert!((share - 0.05).abs() < 0.01, "{share}");
        let mean_burst = share * 100_000.0 / bursts as f64;
        assert!((mean_burst - 5.0).abs() < 0.5, "{mean_burst}");
    }

    #[test]
    fn the_cap_queues_then_drops() {
        let impairment = Impairment {
            rate_bps: Some(800_000),
            queue: Duration::from_millis(100),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let mut lane = Lane::default();
        let now = Instant::now();
        // 1000-byte packets take 10 ms each at 800 kbit/s: ten fit in the 100 ms queue, then one
        // more leaves as the queue is exactly full, and the rest are dropped.
        let fates: Vec<Fate> = (0..20)
            .map(|_| downstream_fate(&mut rng, &mut lane, &impairment, &[0x80; 1000], now))
            .collect();
        let dues: Vec<Duration> = fates
            .iter()
            .filter_map(|fate| match fate {
                Fate::Due(due) => Some(*due - now),
                Fate::Lost(_) => None,
            })
            .collect();
        assert_eq!(dues.len(), 11);
        assert_eq!(dues[0], Duration::from_millis(10));
        assert_eq!(dues[10], Duration::from_millis(110));
    }

    #[test]
    fn a_link_that_spares_the_handshake_loses_only_media() {
        let impairment = Impairment {
            loss: 1.0,
            upstream_loss: 1.0,
            spare_handshake: true,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let (mut lane, now) = (Lane::default(), Instant::now());
        let (stun, dtls, rtp, rtcp) = ([0x00, 0x01], [22, 0xfe], [0x80, 96], [0x81, 201]);
        for (packet, losable) in [
            (&stun[..], false),
            (&dtls[..], false),
            (&rtp[..], true),
            (&rtcp[..], true),
        ] {
            let down = downstream_fate(&mut rng, &mut lane, &impairment, packet, now);
            let up = upstream_fate(&mut rng, &mut lane, &impairment, packet, now);
            assert_eq!(matches!(down, Fate::Lost(_)), losable, "downstream {packet:?}");
            assert_eq!(matches!(up, Fate::Lost(_)), losable, "upstream {packet:?}");
        }
        let everything = Impairment {
            spare_handshake: false,
            ..impairment
        };
        assert!(matches!(
            downstream_fate(&mut rng, &mut lane, &everything, &dtls, now),
            Fate::Lost(_)
        ));
    }

    #[tokio::test]
    async fn a_link_carries_both_ways_with_its_delay() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay::new(Impairment {
            delay: Duration::from_millis(30),
            ..Default::default()
        });
        let link = relay.open(server.local_addr().unwrap()).await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sent = Instant::now();
        receiver.send_to(b"hello", ("127.0.0.1", link.port)).await.unwrap();
        let mut buffer = [0u8; 16];
        let (size, from) = server.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..size], b"hello");
        assert!(sent.elapsed() >= Duration::from_millis(30));
        server.send_to(b"back", from).await.unwrap();
        let size = receiver.recv(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..size], b"back");
        assert!(sent.elapsed() >= Duration::from_millis(60));
        let counts = relay.counts();
        assert_eq!((counts.delivered_upstream, counts.delivered_downstream), (1, 1));
    }
}
