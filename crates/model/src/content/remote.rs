//! Blocks from elsewhere: the upstream gateways asked for a block the local store lacks.
//!
//! No upstream is trusted. A block's bytes are hashed against its CID before they leave this
//! module; an upstream that sends bytes that do not match is put aside for a while (its circuit
//! is open) and the block is asked of the next one. Upstreams are tried best first (recent
//! success, then recent latency); a request slower than its upstream's recent p95 is hedged to
//! the next one, and the first verified answer wins. Concurrent requests for one block share
//! one fetch.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};

use super::block::{Block, verify};
use super::car_feed::CarFeed;
use super::lock;
use super::store::ByteStream;
use crate::error::{Error, Result};

/// The largest block an upstream may send: twice the 1 MiB block limit of IPFS implementations.
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;
/// Latencies and outcomes an upstream's ranking and hedge delay are computed over.
const WINDOW: usize = 32;
/// Failures in a row that open an upstream's circuit, as a wrong block does at once.
const FAILURES_TO_OPEN: u32 = 3;
/// The hedge delay of an upstream with no history, and the bounds of every hedge delay.
const FIRST_HEDGE: Duration = Duration::from_millis(500);
const MIN_HEDGE: Duration = Duration::from_millis(20);
const MAX_HEDGE: Duration = Duration::from_secs(2);

/// Why an upstream gave no block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// It does not have the block (HTTP 404 or 410).
    NotFound,
    /// It failed otherwise (a connection error, a 5xx, a timeout, a body over the limit).
    Failed(String),
}

/// One source of blocks, such as a trustless gateway (`GET /ipfs/{cid}?format=raw`).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Upstream: Send + Sync {
    /// How the upstream is named in logs and metrics (its URL).
    fn name(&self) -> &str;

    /// The bytes it holds for `cid`, unverified.
    async fn block(&self, cid: &Cid) -> std::result::Result<Bytes, UpstreamError>;

    /// Whether to ask it for CARs at all (a gateway configured blocks-only is not).
    fn serves_cars(&self) -> bool {
        true
    }

    /// The blocks a byte range `first..=last` of the file `cid` needs, as a CAR in depth-first
    /// order (`?format=car&dag-scope=entity&entity-bytes=first:last`), unverified. Upstreams that
    /// serve raw blocks only say so with `Failed`.
    async fn car(&self, _cid: &Cid, _first: u64, _last: u64) -> std::result::Result<ByteStream, UpstreamError> {
        Err(UpstreamError::Failed("serves raw blocks only".into()))
    }
}

/// How long to wait for upstreams and how long a misbehaving one is set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// A block not verified by then fails the request (404 if every upstream said not found).
    pub timeout: Duration,
    /// How long an upstream whose circuit opened is asked only when no other is left.
    pub quarantine: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            quarantine: Duration::from_secs(60),
        }
    }
}

/// What one upstream did, for `/metrics`.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    pub requests: AtomicU64,
    /// Blocks it sent that verified.
    pub blocks: AtomicU64,
    pub bytes: AtomicU64,
    pub not_found: AtomicU64,
    pub failures: AtomicU64,
    /// Blocks it sent whose bytes did not match their CID.
    pub bad_blocks: AtomicU64,
    /// Requests sent to it because another was slow.
    pub hedges: AtomicU64,
    /// Sum of the latencies of its verified blocks, in milliseconds.
    pub latency_ms_total: AtomicU64,
    /// CARs of a range asked of it, and those it refused (it is then asked for blocks only).
    pub car_requests: AtomicU64,
    pub car_refusals: AtomicU64,
}

/// One upstream's figures as `/metrics` shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamReport {
    pub name: String,
    pub requests: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub not_found: u64,
    pub failures: u64,
    pub bad_blocks: u64,
    pub hedges: u64,
    pub latency_ms_total: u64,
    pub car_requests: u64,
    pub car_refusals: u64,
    /// The p95 of its recent latencies, in milliseconds (none before its first block).
    pub recent_p95_ms: Option<u64>,
    /// Whether its circuit is open (asked only when no other upstream is left).
    pub quarantined: bool,
}

struct Gateway {
    upstream: Arc<dyn Upstream>,
    health: Mutex<Health>,
    counters: UpstreamCounters,
}

#[derive(Default)]
struct Health {
    /// Latencies of recent verified blocks, oldest first.
    latencies: VecDeque<Duration>,
    /// Outcomes of recent requests (true: a verified block or a not-found), oldest first.
    outcomes: VecDeque<bool>,
    failures_in_a_row: u32,
    quarantined_until: Option<Instant>,
    /// Until when it is not asked for CARs, having refused one.
    no_cars_until: Option<Instant>,
}

impl Health {
    fn push<T>(window: &mut VecDeque<T>, value: T) {
        if window.len() == WINDOW {
            window.pop_front();
        }
        window.push_back(value);
    }

    fn quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|until| until > now)
    }

    fn p95(&self) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let index = (sorted.len() * 95).div_ceil(100).saturating_sub(1);
        Some(sorted[index])
    }

    /// Lower is better: the median latency over the success rate; no history ranks first so
    /// every upstream gets measured.
    fn cost(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 0.0;
        }
        let successes = self.outcomes.iter().filter(|ok| **ok).count() as f64;
        let rate = (successes / self.outcomes.len() as f64).max(0.05);
        let mut sorted: Vec<Duration> = self.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(FIRST_HEDGE);
        (median.as_secs_f64() * 1000.0 + 1.0) / rate
    }
}

/// One upstream, as a CAR feed names the source of its blocks.
#[derive(Clone)]
pub(crate) struct UpstreamHandle(Arc<Gateway>);

/// What a shared fetch ends with; [`Error`] itself is not `Clone`.
#[derive(Clone, Debug)]
enum Outcome {
    Found(Bytes),
    NotFound,
    Unreachable(String),
}

type SharedFetch = Shared<BoxFuture<'static, Outcome>>;

/// The upstreams, ranked by how they have been doing.
pub struct Remote {
    gateways: Vec<Arc<Gateway>>,
    options: RemoteOptions,
    in_flight: Mutex<HashMap<Cid, SharedFetch>>,
}

impl Remote {
    pub fn new(upstreams: Vec<Arc<dyn Upstream>>, options: RemoteOptions) -> Self {
        Self {
            gateways: upstreams
                .into_iter()
                .map(|upstream| {
                    Arc::new(Gateway {
                        upstream,
                        health: Mutex::default(),
                        counters: UpstreamCounters::default(),
                    })
                })
                .collect(),
            options,
            in_flight: Mutex::default(),
        }
    }

    pub fn options(&self) -> RemoteOptions {
        self.options
    }

    /// The block from the first upstream whose bytes verify; `NotFound` when every upstream said
    /// so, `Unreachable` when none could supply it otherwise (or not within the timeout).
    pub async fn fetch(self: &Arc<Self>, cid: &Cid) -> Result<Block> {
        let fetch = {
            let mut in_flight = lock(&self.in_flight);
            in_flight
                .entry(*cid)
                .or_insert_with(|| {
                    tracing::debug!(%cid, "fetching a block");
                    let remote = self.clone();
                    let cid = *cid;
                    async move {
                        let outcome = remote.fetch_verified(cid).await;
                        lock(&remote.in_flight).remove(&cid);
                        outcome
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        match fetch.await {
            Outcome::Found(data) => Ok(Block::trusted(*cid, data)),
            Outcome::NotFound => Err(Error::NotFound(*cid)),
            Outcome::Unreachable(reason) => Err(Error::Unreachable { cid: *cid, reason }),
        }
    }

    /// A CAR of the blocks the bytes `first..=last` of the file `cid` need, from the best upstream
    /// that serves CARs; `None` when none does (the caller reads block by block).
    pub async fn open_car(&self, cid: &Cid, first: u64, last: u64) -> Option<CarFeed> {
        let now = Instant::now();
        let candidates = self.ranked().into_iter().filter(|gateway| {
            let health = lock(&gateway.health);
            gateway.upstream.serves_cars()
                && !health.quarantined(now)
                && health.no_cars_until.is_none_or(|until| until <= now)
        });
        for gateway in candidates {
            tracing::debug!(%cid, first, last, upstream = gateway.upstream.name(), "asking for a CAR");
            gateway.counters.requests.fetch_add(1, Ordering::Relaxed);
            gateway.counters.car_requests.fetch_add(1, Ordering::Relaxed);
            match gateway.upstream.car(cid, first, last).await {
                Ok(car) => return Some(CarFeed::new(UpstreamHandle(gateway), car)),
                Err(UpstreamError::NotFound) => {
                    gateway.said_not_found();
                    return None;
                }
                Err(UpstreamError::Failed(reason)) => {
                    // A gateway that serves blocks only is not at fault: it is asked for blocks,
                    // and the next one for the CAR.
                    gateway.counters.car_refusals.fetch_add(1, Ordering::Relaxed);
                    lock(&gateway.health).no_cars_until = Some(now + self.options.quarantine);
                    tracing::debug!(%cid, upstream = gateway.upstream.name(), %reason, "no CAR from this upstream");
                }
            }
        }
        None
    }

    /// A block that came in a CAR, checked against `cid`; `None` (the upstream's record told why)
    /// when it does not match.
    pub(crate) async fn check_from(&self, from: &UpstreamHandle, cid: Cid, data: Bytes) -> Option<Bytes> {
        let gateway = &from.0;
        let checked = if data.len() > MAX_BLOCK_BYTES {
            Err(Answer::Failed(format!(
                "sent {} bytes, over the block limit",
                data.len()
            )))
        } else {
            check(cid, data).await
        };
        match checked {
            Ok(data) => {
                gateway.counters.blocks.fetch_add(1, Ordering::Relaxed);
                gateway.counters.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(data)
            }
            Err(Answer::Wrong) => {
                self.car_sent_wrong_block(from, &format!("sent bytes that do not match {cid}"));
                None
            }
            Err(Answer::Failed(reason)) => {
                self.car_failed(from, &reason);
                None
            }
            Err(Answer::NotFound) => None,
        }
    }

    /// A CAR that broke off or could not be read.
    pub(crate) fn car_failed(&self, from: &UpstreamHandle, reason: &str) {
        from.0.failed(self.options.quarantine);
        tracing::warn!(upstream = from.0.upstream.name(), %reason, "a CAR from an upstream failed; reading on block by block");
    }

    /// A CAR that held a block the walk did not ask for, or one that does not match its CID.
    pub(crate) fn car_sent_wrong_block(&self, from: &UpstreamHandle, reason: &str) {
        from.0.sent_wrong_block(self.options.quarantine);
        tracing::warn!(upstream = from.0.upstream.name(), %reason, "an upstream's CAR held a wrong block; set aside");
    }

    /// Each upstream's figures, in the order they were configured.
    pub fn report(&self) -> Vec<UpstreamReport> {
        let now = Instant::now();
        self.gateways
            .iter()
            .map(|gateway| {
                let health = lock(&gateway.health);
                let c = &gateway.counters;
                UpstreamReport {
                    name: gateway.upstream.name().to_owned(),
                    requests: c.requests.load(Ordering::Relaxed),
                    blocks: c.blocks.load(Ordering::Relaxed),
                    bytes: c.bytes.load(Ordering::Relaxed),
                    not_found: c.not_found.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                    bad_blocks: c.bad_blocks.load(Ordering::Relaxed),
                    hedges: c.hedges.load(Ordering::Relaxed),
                    latency_ms_total: c.latency_ms_total.load(Ordering::Relaxed),
                    car_requests: c.car_requests.load(Ordering::Relaxed),
                    car_refusals: c.car_refusals.load(Ordering::Relaxed),
                    recent_p95_ms: health.p95().map(|d| d.as_millis() as u64),
                    quarantined: health.quarantined(now),
                }
            })
            .collect()
    }

    /// The upstreams in the order to ask them: open circuits last, then by cost.
    fn ranked(&self) -> Vec<Arc<Gateway>> {
        let now = Instant::now();
        let mut ranked: Vec<(bool, f64, usize, Arc<Gateway>)> = self
            .gateways
            .iter()
            .enumerate()
            .map(|(order, gateway)| {
                let health = lock(&gateway.health);
                (health.quarantined(now), health.cost(), order, gateway.clone())
            })
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        ranked.into_iter().map(|(_, _, _, gateway)| gateway).collect()
    }

    async fn fetch_verified(&self, cid: Cid) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let quarantine = self.options.quarantine;
        let mut waiting = self.ranked().into_iter();
        let mut attempts = FuturesUnordered::new();
        let mut failures: Vec<String> = Vec::new();
        // When to ask the next upstream too: the last one asked has had its recent p95.
        let mut hedge_at: Option<tokio::time::Instant> = None;
        // Upstreams asked and not answered yet, with when they were asked.
        let mut pending: Vec<(Arc<Gateway>, Instant)> = Vec::new();
        loop {
            if attempts.is_empty() {
                let Some(gateway) = waiting.next() else {
                    return if failures.is_empty() {
                        Outcome::NotFound
                    } else {
                        Outcome::Unreachable(failures.join("; "))
                    };
                };
                hedge_at = Some(tokio::time::Instant::now() + gateway.hedge_delay());
                pending.push((gateway.clone(), Instant::now()));
                attempts.push(ask(gateway, cid, false));
            }
            let hedge = async {
                match hedge_at.filter(|_| !waiting.as_slice().is_empty()) {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                Some((gateway, took, answer)) = attempts.next() => {
                    let name = gateway.upstream.name();
                    pending.retain(|(asked, _)| !Arc::ptr_eq(asked, &gateway));
                    match answer {
                        Ok(data) => {
                            gateway.succeeded(took, data.len());
                            // The slower ones are measured by what they took so far, so an
                            // upstream that always loses the race stops being asked first.
                            for (slower, asked_at) in pending {
                                slower.lost_race(asked_at.elapsed());
                            }
                            return Outcome::Found(data);
                        }
                        Err(Answer::NotFound) => gateway.said_not_found(),
                        Err(Answer::Failed(reason)) => {
                            gateway.failed(quarantine);
                            tracing::warn!(%cid, upstream = name, %reason, "upstream failed");
                            failures.push(format!("{name}: {reason}"));
                        }
                        Err(Answer::Wrong) => {
                            gateway.sent_wrong_block(quarantine);
                            tracing::warn!(%cid, upstream = name, "upstream sent bytes that do not match the CID; set aside");
                            failures.push(format!("{name}: sent bytes that do not match the CID"));
                        }
                    }
                }
                () = hedge => {
                    if let Some(gateway) = waiting.next() {
                        hedge_at = Some(tokio::time::Instant::now() + gateway.hedge_delay());
                        pending.push((gateway.clone(), Instant::now()));
                        attempts.push(ask(gateway, cid, true));
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    failures.push(format!("no upstream supplied it within {:?}", self.options.timeout));
                    return Outcome::Unreachable(failures.join("; "));
                }
            }
        }
    }
}

type Attempt = BoxFuture<'static, (Arc<Gateway>, Duration, std::result::Result<Bytes, Answer>)>;

/// Asks one upstream for `cid` and checks what it sends.
fn ask(gateway: Arc<Gateway>, cid: Cid, hedged: bool) -> Attempt {
    gateway.counters.requests.fetch_add(1, Ordering::Relaxed);
    if hedged {
        gateway.counters.hedges.fetch_add(1, Ordering::Relaxed);
    }
    async move {
        let started = Instant::now();
        let answer = match gateway.upstream.block(&cid).await {
            Ok(data) if data.len() > MAX_BLOCK_BYTES => Err(Answer::Failed(format!(
                "sent {} bytes, over the {MAX_BLOCK_BYTES}-byte block limit",
                data.len()
            ))),
            Ok(data) => check(cid, data).await,
            Err(e) => Err(e.into()),
        };
        (gateway, started.elapsed(), answer)
    }
    .boxed()
}

/// An upstream's answer once checked.
enum Answer {
    NotFound,
    Failed(String),
    /// Bytes that do not hash to the CID.
    Wrong,
}

impl From<UpstreamError> for Answer {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::NotFound => Answer::NotFound,
            UpstreamError::Failed(reason) => Answer::Failed(reason),
        }
    }
}

/// Hashes `data` against `cid` (off the async threads when large, as local reads do).
async fn check(cid: Cid, data: Bytes) -> std::result::Result<Bytes, Answer> {
    let verdict = if data.len() >= 32 * 1024 {
        let copy = data.clone();
        tokio::task::spawn_blocking(move || verify(&cid, &copy))
            .await
            .unwrap_or_else(|e| Err(Error::task("hashing", e)))
    } else {
        verify(&cid, &data)
    };
    match verdict {
        Ok(()) => Ok(data),
        Err(Error::HashMismatch(_)) => Err(Answer::Wrong),
        Err(other) => Err(Answer::Failed(other.to_string())),
    }
}

impl Gateway {
    /// How long to give this upstream before asking the next as well: its recent p95.
    fn hedge_delay(&self) -> Duration {
        lock(&self.health)
            .p95()
            .map_or(FIRST_HEDGE, |p95| p95.clamp(MIN_HEDGE, MAX_HEDGE))
    }

    fn succeeded(&self, took: Duration, bytes: usize) {
        let c = &self.counters;
        c.blocks.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        c.latency_ms_total.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
        let mut health = lock(&self.health);
        Health::push(&mut health.latencies, took);
        Health::push(&mut health.outcomes, true);
        health.failures_in_a_row = 0;
        health.quarantined_until = None;
    }

    /// Another upstream answered first; this one had taken `so_far` without answering.
    fn lost_race(&self, so_far: Duration) {
        let mut health = lock(&self.health);
        Health::push(&mut health.latencies, so_far);
        Health::push(&mut health.outcomes, true);
    }

    fn said_not_found(&self) {
        self.counters.not_found.fetch_add(1, Ordering::Relaxed);
        let mut health = lock(&self.health);
        Health::push(&mut health.outcomes, true);
        health.failures_in_a_row = 0;
    }

    fn failed(&self, quarantine: Duration) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let mut health = lock(&self.health);
        Health::push(&mut health.outcomes, false);
        health.failures_in_a_row += 1;
        if health.failures_in_a_row >= FAILURES_TO_OPEN {
            health.quarantined_until = Some(Instant::now() + quarantine);
        }
    }

    fn sent_wrong_block(&self, quarantine: Duration) {
        self.counters.bad_blocks.fetch_add(1, Ordering::Relaxed);
        let mut health = lock(&self.health);
        Health::push(&mut health.outcomes, false);
        health.quarantined_until = Some(Instant::now() + quarantine);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::content::block::RAW;
    use crate::content::{BlockStore, Blocks, MemoryBlockStore};

    /// An upstream in memory that answers as told.
    struct Fake {
        name: String,
        blocks: HashMap<Cid, Bytes>,
        behaviour: Behaviour,
        delay: Duration,
        calls: AtomicUsize,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Behaviour {
        Honest,
        /// Sends other bytes than the block's.
        Lies,
        /// Fails every request.
        Broken,
    }

    impl Fake {
        fn new(name: &str, blocks: &[Block], behaviour: Behaviour, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                name: name.to_owned(),
                blocks: blocks.iter().map(|b| (*b.cid(), b.data().clone())).collect(),
                behaviour,
                delay,
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Upstream for Fake {
        fn name(&self) -> &str {
            &self.name
        }

        async fn block(&self, cid: &Cid) -> std::result::Result<Bytes, UpstreamError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            match self.behaviour {
                Behaviour::Broken => Err(UpstreamError::Failed("HTTP 503".into())),
                _ if !self.blocks.contains_key(cid) => Err(UpstreamError::NotFound),
                Behaviour::Lies => Ok(Bytes::from_static(b"not what you asked for")),
                Behaviour::Honest => Ok(self.blocks[cid].clone()),
            }
        }
    }

    fn block(text: &str) -> Block {
        Block::encode(cid::Version::V1, RAW, Bytes::copy_from_slice(text.as_bytes()))
    }

    fn remote(upstreams: &[&Arc<Fake>]) -> Arc<Remote> {
        remote_with(upstreams, RemoteOptions::default())
    }

    fn remote_with(upstreams: &[&Arc<Fake>], options: RemoteOptions) -> Arc<Remote> {
        let upstreams = upstreams.iter().map(|f| (*f).clone() as Arc<dyn Upstream>).collect();
        Arc::new(Remote::new(upstreams, options))
    }

    fn report<'a>(reports: &'a [UpstreamReport], name: &str) -> &'a UpstreamReport {
        reports.iter().find(|r| r.name == name).expect("reported")
    }

    #[tokio::test]
    async fn a_block_from_an_honest_upstream_is_verified_and_counted() {
        let wanted = block("hello");
        let honest = Fake::new(
            "honest",
            std::slice::from_ref(&wanted),
            Behaviour::Honest,
            Duration::ZERO,
        );
        let remote = remote(&[&honest]);
        let got = remote.fetch(wanted.cid()).await.unwrap();
        assert_eq!(got, wanted);
        let reports = remote.report();
        let honest = report(&reports, "honest");
        assert_eq!((honest.requests, honest.blocks, honest.bytes), (1, 1, 5));
        assert!(honest.recent_p95_ms.is_some());
    }

    #[tokio::test]
    async fn a_lying_upstream_is_set_aside_and_the_block_comes_from_another() {
        let (wanted, other) = (block("the real bytes"), block("another"));
        let both = [wanted.clone(), other.clone()];
        let liar = Fake::new("liar", &both, Behaviour::Lies, Duration::ZERO);
        let honest = Fake::new("honest", &both, Behaviour::Honest, Duration::ZERO);
        // The liar is configured first and has no history, so it is asked first.
        let upstreams = remote(&[&liar, &honest]);
        assert_eq!(upstreams.fetch(wanted.cid()).await.unwrap(), wanted);
        let reports = upstreams.report();
        assert_eq!(report(&reports, "liar").bad_blocks, 1);
        assert!(report(&reports, "liar").quarantined);
        // Its circuit is open: the next block is asked of the honest one alone.
        assert_eq!(upstreams.fetch(other.cid()).await.unwrap(), other);
        assert_eq!((liar.calls(), honest.calls()), (1, 2));
    }

    #[tokio::test]
    async fn only_liars_give_an_unreachable_error_and_never_their_bytes() {
        let wanted = block("x");
        let liar = Fake::new("liar", std::slice::from_ref(&wanted), Behaviour::Lies, Duration::ZERO);
        let error = remote(&[&liar]).fetch(wanted.cid()).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unreachable { cid, reason } if cid == wanted.cid()
            && reason.contains("liar: sent bytes that do not match")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn not_found_everywhere_is_not_found_and_a_failure_anywhere_is_unreachable() {
        let missing = block("nobody has this");
        let empty_a = Fake::new("a", &[], Behaviour::Honest, Duration::ZERO);
        let empty_b = Fake::new("b", &[], Behaviour::Honest, Duration::ZERO);
        let broken = Fake::new("broken", &[], Behaviour::Broken, Duration::ZERO);
        let error = remote(&[&empty_a, &empty_b]).fetch(missing.cid()).await.unwrap_err();
        assert!(matches!(error, Error::NotFound(cid) if cid == *missing.cid()));
        assert_eq!((empty_a.calls(), empty_b.calls()), (1, 1));
        let error = remote(&[&empty_a, &broken]).fetch(missing.cid()).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unreachable { reason, .. } if reason.contains("broken: HTTP 503")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_slow_upstream_is_hedged_to_the_next_one() {
        let wanted = block("hedged");
        let slow = Fake::new(
            "slow",
            std::slice::from_ref(&wanted),
            Behaviour::Honest,
            Duration::from_secs(20),
        );
        let fast = Fake::new("fast", std::slice::from_ref(&wanted), Behaviour::Honest, Duration::ZERO);
        let remote = remote(&[&slow, &fast]);
        let started = Instant::now();
        assert_eq!(remote.fetch(wanted.cid()).await.unwrap(), wanted);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hedge answered, not the slow one"
        );
        let reports = remote.report();
        assert_eq!(report(&reports, "fast").hedges, 1);
        assert_eq!(report(&reports, "slow").blocks, 0);
        // Measured now, the fast one ranks first and the slow one is not asked.
        remote.fetch(block("hedged").cid()).await.unwrap();
        assert_eq!(slow.calls(), 1);
    }

    #[tokio::test]
    async fn a_block_not_supplied_within_the_timeout_is_unreachable() {
        let wanted = block("late");
        let slow = Fake::new(
            "slow",
            std::slice::from_ref(&wanted),
            Behaviour::Honest,
            Duration::from_secs(20),
        );
        let options = RemoteOptions {
            timeout: Duration::from_millis(100),
            ..RemoteOptions::default()
        };
        let error = remote_with(&[&slow], options).fetch(wanted.cid()).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unreachable { reason, .. } if reason.contains("within 100ms")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_oversized_block_is_refused() {
        let huge = Bytes::from(vec![7u8; MAX_BLOCK_BYTES + 1]);
        let wanted = Block::encode(cid::Version::V1, RAW, huge);
        let big = Fake::new("big", std::slice::from_ref(&wanted), Behaviour::Honest, Duration::ZERO);
        let error = remote(&[&big]).fetch(wanted.cid()).await.unwrap_err();
        assert!(
            error.to_string().contains("over the 2097152-byte block limit"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_block_share_one_fetch() {
        let wanted = block("popular");
        let honest = Fake::new(
            "honest",
            std::slice::from_ref(&wanted),
            Behaviour::Honest,
            Duration::from_millis(50),
        );
        let remote = remote(&[&honest]);
        let fetches = (0..10).map(|_| remote.fetch(wanted.cid()));
        for got in futures::future::join_all(fetches).await {
            assert_eq!(got.unwrap(), wanted);
        }
        assert_eq!(honest.calls(), 1);
    }

    #[tokio::test]
    async fn blocks_keep_what_they_fetch_and_refetch_a_corrupted_copy() {
        let wanted = block("cached here");
        let honest = Fake::new(
            "honest",
            std::slice::from_ref(&wanted),
            Behaviour::Honest,
            Duration::ZERO,
        );
        let store = MemoryBlockStore::new();
        let blocks = Blocks::new(Arc::new(store.clone()), 0).with_remote(remote(&[&honest]));
        assert_eq!(blocks.get(wanted.cid()).await.unwrap(), wanted);
        for _ in 0..100 {
            if store.has(wanted.cid()).await.unwrap() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.get(wanted.cid()).await.unwrap(), Some(wanted.data().clone()));
        // A later read comes from the store.
        blocks.get(wanted.cid()).await.unwrap();
        assert_eq!(honest.calls(), 1);
        // A corrupted copy is fetched again rather than served or failed.
        store.overwrite_unchecked(wanted.cid(), Bytes::from_static(b"rot"));
        assert_eq!(blocks.get(wanted.cid()).await.unwrap(), wanted);
        assert_eq!(honest.calls(), 2);
        assert_eq!(blocks.counters().remote_blocks.load(Ordering::Relaxed), 2);
    }
}
