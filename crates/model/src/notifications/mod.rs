//! Live notifications: typed events published by every operation, fanned out to subscribers with
//! filters, and kept as history (the last N per type) through a repository.
//!
//! Each subscriber has a queue bounded in events (one that has taken everything takes a batch of
//! any size). Publishing never waits: a subscriber whose queue is full is disconnected (marked as
//! lagging, so its connection can say why) and the others are not slowed.
//!
//! Every event has an id, and subscribers receive events in the order of their ids, so a client
//! that lost its connection asks for what came after the last id it saw (history `after`) and
//! misses nothing the history still keeps. On its own, a hub numbers events as they are published
//! (ids follow the clock in microseconds, so a restart continues above every id handed out).
//! Where instances share a database, the database numbers them: events reach every subscriber,
//! this instance's included, once written, in the one order all instances see.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::clock::{now_ms, now_us};
use crate::error::Result;

pub mod events;
mod history;
pub use events::{CloseReason, Event, EventData, PlayTarget, StreamEndReason, WebrtcErrorSubject, emit};
use history::{History, WritePace};

macro_rules! notification_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The kinds of notification.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum NotificationType { $($variant),* }

        impl NotificationType {
            /// Every type, in a stable order.
            pub const ALL: &'static [NotificationType] = &[$(NotificationType::$variant),*];

            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

notification_types! {
    ContentAdded => "content_added",
    ContentRetrieved => "content_retrieved",
    ContentRemoved => "content_removed",
    PinAdded => "pin_added",
    PinRemoved => "pin_removed",
    WebrtcConnectionCreated => "webrtc_connection_created",
    WebrtcConnectionEstablished => "webrtc_connection_established",
    WebrtcConnectionClosed => "webrtc_connection_closed",
    WebrtcStreamStarted => "webrtc_stream_started",
    WebrtcStreamEnded => "webrtc_stream_ended",
    WebrtcQualityChanged => "webrtc_quality_changed",
    WebrtcError => "webrtc_error",
    SystemMetrics => "system_metrics",
    SystemWarning => "system_warning",
    SystemError => "system_error",
    SystemInfo => "system_info",
    SecurityAudit => "security_audit",
    CustomEvent => "custom_event",
    AllEvents => "all_events",
}

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub kind: NotificationType,
    /// A JSON object describing the event.
    pub data: EventData,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What emitted it (`gateway`, `content`, `websocket`, ...).
    pub source: Option<Cow<'static, str>>,
    /// Its place among the events: subscribers receive events in the order of their ids. None
    /// until numbered (where instances share a database, until written).
    pub id: Option<i64>,
    /// The instance that published it, where several share a database.
    pub instance: Option<String>,
}

impl Notification {
    /// The event as subscribers see it, the root that dotted filter paths start from.
    pub fn to_message(&self) -> Value {
        let mut message = serde_json::json!({
            "type": "notification",
            "notification_type": self.kind.as_str(),
            "data": self.data.to_json(),
            "timestamp": self.timestamp_ms,
        });
        if let Some(source) = &self.source {
            message["source"] = Value::String(source.to_string());
        }
        if let Some(id) = self.id {
            message["id"] = id.into();
        }
        if let Some(instance) = &self.instance {
            message["instance"] = Value::String(instance.clone());
        }
        message
    }
}

/// Publishing events; the port operations emit through.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Notifier: Send + Sync {
    fn publish(&self, kind: NotificationType, data: EventData, source: Option<Cow<'static, str>>);
}

/// Where history is kept (SQLite in the persistence crate).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait NotificationRepository: Send + Sync {
    /// Keeps events in the given order: with their ids where they have them, numbered by the
    /// repository, in that order, where they do not.
    async fn save_batch(&self, notifications: &[Notification]) -> Result<()>;

    /// Notifications (of one type, if given), oldest first: the most recent `limit`, or, with
    /// `after`, the first `limit` whose id is greater.
    async fn history(
        &self,
        kind: Option<NotificationType>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Notification>>;

    /// Keeps only the newest `keep` notifications of each type, and remembers the newest id of
    /// each type it deleted (see [`NotificationRepository::dropped_after`]).
    async fn prune(&self, keep: u64) -> Result<()>;

    /// Remembers that events of these types were let go unwritten, up to these ids (the hub
    /// holds at most `keep` of a type waiting to be written).
    async fn record_dropped(&self, newest: &[(NotificationType, i64)]) -> Result<()>;

    /// The types of which an event with an id above `after` was deleted or let go: a client
    /// resuming after that id cannot have all of them back.
    async fn dropped_after(&self, after: i64) -> Result<Vec<NotificationType>>;
}

/// The events of every instance sharing one database, this one's included, as they are written
/// (PostgreSQL LISTEN/NOTIFY in the persistence crate). Each instance writes its events to the
/// shared history, which numbers them; this feed hands them over in the order of their ids.
#[async_trait]
pub trait PeerEvents: Send {
    /// The next events, numbered, in the order of their ids; waits until there are some. After
    /// an error the caller waits a moment and asks again: the feed reconnects, and hands over
    /// what was written meanwhile.
    async fn next_batch(&mut self) -> Result<Vec<Notification>>;
}

/// Which events a subscriber wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subscription {
    pub types: BTreeSet<NotificationType>,
    /// A plain key compares `data[key]` (an absent key passes); a dotted key is a path from the
    /// event's root (`data.cid`, `source`), and a missing path fails.
    pub filters: BTreeMap<String, Value>,
}

impl Subscription {
    /// Whether events of this type are subscribed to (filters aside).
    pub fn wants(&self, kind: NotificationType) -> bool {
        self.types.contains(&NotificationType::AllEvents) || self.types.contains(&kind)
    }

    pub fn matches(&self, notification: &Notification, message: &Value) -> bool {
        self.wants(notification.kind)
            && self.filters.iter().all(|(key, expected)| {
                if key.contains('.') {
                    key.split('.').try_fold(message, |node, part| node.get(part)) == Some(expected)
                } else {
                    message["data"].get(key).is_none_or(|actual| actual == expected)
                }
            })
    }
}

/// Counters of the hub.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubMetrics {
    pub connections_total: u64,
    pub active_connections: u64,
    pub notifications_sent: u64,
    pub notifications_published: u64,
    pub slow_consumers_dropped: u64,
    /// Events of other instances delivered here.
    pub notifications_relayed: u64,
    pub subscriptions_by_type: BTreeMap<String, u64>,
}

/// One published event, shared by every subscriber it goes to.
pub struct Delivery {
    pub notification: Notification,
    /// The event as subscribers see it.
    pub message: Value,
    /// `message` as JSON text, serialized once for every subscriber (each holds a reference).
    pub text: bytestring::ByteString,
}

/// Events that reach a subscriber together, in the order of their ids. A batch every subscriber
/// wants whole is one allocation they all share, and so is its wire form.
pub struct EventBatch {
    deliveries: Box<[Arc<Delivery>]>,
    wire: OnceLock<Bytes>,
}

impl EventBatch {
    fn new(deliveries: impl IntoIterator<Item = Arc<Delivery>>) -> Events {
        Arc::new(Self {
            deliveries: deliveries.into_iter().collect(),
            wire: OnceLock::new(),
        })
    }

    /// The batch encoded for sending: made by the first connection that sends it, then shared by
    /// every other one (a thousand subscribers of one batch encode it once). Connections reading
    /// one hub all encode alike; the first encoding is the one kept.
    pub fn wire_form(&self, encode: impl FnOnce(&[Arc<Delivery>]) -> Bytes) -> Bytes {
        self.wire.get_or_init(|| encode(&self.deliveries)).clone()
    }
}

impl std::ops::Deref for EventBatch {
    type Target = [Arc<Delivery>];

    fn deref(&self) -> &Self::Target {
        &self.deliveries
    }
}

pub type Events = Arc<EventBatch>;

/// A subscriber's end: events arrive in batches (see [`Connection::poll_batch`]); when the
/// queue closes, `lagged` says whether the hub dropped the subscriber for not keeping up.
pub struct Connection {
    pub id: u64,
    batches: mpsc::UnboundedReceiver<Events>,
    /// Events the hub queued and this end has not taken: the queue's bound counts events, not
    /// batches.
    queued: Arc<AtomicUsize>,
    /// The rest of a batch taken by [`Connection::recv`], one event at a time.
    pending: std::collections::VecDeque<Arc<Delivery>>,
    pub lagged: Arc<AtomicBool>,
}

impl Connection {
    /// The next batch of events, or a wake-up once there is one; `None` once the queue is closed
    /// and empty.
    pub fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Events>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Some(EventBatch::new(self.pending.drain(..))));
        }
        self.batches.poll_recv(cx).map(|batch| {
            let batch = batch?;
            self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
            Some(batch)
        })
    }

    /// The next batch of events; `None` once the queue is closed and empty.
    pub async fn recv_batch(&mut self) -> Option<Events> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    /// The next event; `None` once the queue is closed and empty.
    pub async fn recv(&mut self) -> Option<Arc<Delivery>> {
        if self.pending.is_empty() {
            let batch = self.batches.recv().await?;
            self.take_one_by_one(batch);
        }
        self.pending.pop_front()
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Arc<Delivery>> {
        if self.pending.is_empty() {
            let batch = self.batches.try_recv().ok()?;
            self.take_one_by_one(batch);
        }
        self.pending.pop_front()
    }

    fn take_one_by_one(&mut self, batch: Events) {
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        self.pending.extend(batch.iter().cloned());
    }
}

struct Subscriber {
    subscription: Subscription,
    sender: mpsc::UnboundedSender<Events>,
    queued: Arc<AtomicUsize>,
    /// Most events queued before the subscriber counts as not keeping up.
    capacity: usize,
    lagged: Arc<AtomicBool>,
}

/// Notifications kept per type by default.
pub const DEFAULT_HISTORY_PER_TYPE: u64 = 1000;

/// Who numbers the events of a hub.
enum Numbering {
    /// The hub, as they are published; holds the last id given, and the queue to the task that
    /// fans them out.
    Hub(Mutex<i64>, mpsc::UnboundedSender<Notification>),
    /// The shared history, as they are written; the hub's subscribers receive them from there.
    /// Holds this instance's key among those sharing it.
    SharedHistory(String),
}

/// Fans events out to subscribers and hands them to the history writer.
pub struct NotificationHub {
    fanout: Arc<Fanout>,
    next_id: AtomicU64,
    connections_total: AtomicU64,
    published: AtomicU64,
    relayed: AtomicU64,
    numbering: Numbering,
    history: History,
}

/// The subscribers, and what was sent to them.
struct Fanout {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    /// How many subscribers there are, read without the lock.
    listening: AtomicUsize,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// Most events a local fan-out takes at once.
const FAN_OUT_BATCH: usize = 1024;

impl NotificationHub {
    /// Starts the history writer on the current runtime, keeping `keep_per_type` per type.
    ///
    /// Events published here reach subscribers through a task of their own, which takes every
    /// event waiting each time it runs: when publishing outpaces delivery, events go out in
    /// batches, each subscriber woken once per batch and its socket written once, instead of a
    /// wake-up and a write per event (which is what fills a busy server's time).
    pub fn start(repository: Arc<dyn NotificationRepository>, keep_per_type: u64) -> Self {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Notification>();
        let hub = Self::start_with(
            repository,
            keep_per_type,
            WritePace {
                every: history::WRITE_EVERY,
                slowest: history::SLOWEST_WRITE,
            },
            Numbering::Hub(Mutex::new(0), queue),
        );
        let fanout = Arc::downgrade(&hub.fanout);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(FAN_OUT_BATCH);
            // Ends with the hub, whose drop closes the queue.
            while waiting.recv_many(&mut batch, FAN_OUT_BATCH).await > 0 {
                let Some(fanout) = fanout.upgrade() else { return };
                fanout.fan_out(std::mem::take(&mut batch));
            }
        });
        hub
    }

    /// A hub whose history is shared by several instances, `instance` being this one's key among
    /// them: events are written at once, numbered by the history, and reach subscribers through
    /// [`NotificationHub::relay`], every instance's in the one order of their ids.
    pub fn start_shared(repository: Arc<dyn NotificationRepository>, keep_per_type: u64, instance: &str) -> Self {
        Self::start_with(
            repository,
            keep_per_type,
            WritePace {
                every: history::SHARED_WRITE_EVERY,
                slowest: history::SHARED_WRITE_EVERY,
            },
            Numbering::SharedHistory(instance.to_owned()),
        )
    }

    fn start_with(
        repository: Arc<dyn NotificationRepository>,
        keep_per_type: u64,
        pace: WritePace,
        numbering: Numbering,
    ) -> Self {
        Self {
            fanout: Arc::new(Fanout {
                subscribers: Mutex::new(HashMap::new()),
                listening: AtomicUsize::new(0),
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
            next_id: AtomicU64::new(1),
            connections_total: AtomicU64::new(0),
            published: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            numbering,
            history: History::start(repository, keep_per_type, pace),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.fanout.lock()
    }

    /// A new subscriber with a queue of `capacity` events and no subscription yet.
    pub fn connect(&self, capacity: usize) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, batches) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let lagged = Arc::new(AtomicBool::new(false));
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.lock();
        subscribers.insert(
            id,
            Subscriber {
                subscription: Subscription::default(),
                sender,
                queued: queued.clone(),
                capacity: capacity.max(1),
                lagged: lagged.clone(),
            },
        );
        self.fanout.listening.store(subscribers.len(), Ordering::Relaxed);
        Connection {
            id,
            batches,
            queued,
            pending: Default::default(),
            lagged,
        }
    }

    pub fn disconnect(&self, id: u64) {
        let mut subscribers = self.lock();
        subscribers.remove(&id);
        self.fanout.listening.store(subscribers.len(), Ordering::Relaxed);
    }

    /// Adds types (and replaces filters, when given); returns the subscription now in force.
    pub fn subscribe(
        &self,
        id: u64,
        types: &[NotificationType],
        filters: Option<BTreeMap<String, Value>>,
    ) -> Option<Subscription> {
        let mut subscribers = self.lock();
        let subscriber = subscribers.get_mut(&id)?;
        subscriber.subscription.types.extend(types.iter().copied());
        if let Some(filters) = filters {
            subscriber.subscription.filters = filters;
        }
        Some(subscriber.subscription.clone())
    }

    /// Removes the given types, or every type when none is given.
    pub fn unsubscribe(&self, id: u64, types: Option<&[NotificationType]>) -> Option<Subscription> {
        let mut subscribers = self.lock();
        let subscriber = subscribers.get_mut(&id)?;
        match types {
            Some(types) => types.iter().for_each(|t| {
                subscriber.subscription.types.remove(t);
            }),
            None => subscriber.subscription.types.clear(),
        }
        Some(subscriber.subscription.clone())
    }

    pub fn subscription(&self, id: u64) -> Option<Subscription> {
        self.lock().get(&id).map(|s| s.subscription.clone())
    }

    pub fn metrics(&self) -> HubMetrics {
        let subscribers = self.lock();
        let mut by_type = BTreeMap::new();
        for subscriber in subscribers.values() {
            for kind in &subscriber.subscription.types {
                *by_type.entry(kind.as_str().to_owned()).or_insert(0) += 1;
            }
        }
        HubMetrics {
            connections_total: self.connections_total.load(Ordering::Relaxed),
            active_connections: subscribers.len() as u64,
            notifications_sent: self.fanout.sent.load(Ordering::Relaxed),
            notifications_published: self.published.load(Ordering::Relaxed),
            slow_consumers_dropped: self.fanout.dropped.load(Ordering::Relaxed),
            notifications_relayed: self.relayed.load(Ordering::Relaxed),
            subscriptions_by_type: by_type,
        }
    }

    /// Events (of one type, if given), oldest first: the most recent `limit`, or, with `after`,
    /// the first `limit` published after the event of that id.
    pub async fn history(
        &self,
        kind: Option<NotificationType>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        self.history.read(kind, after, limit).await
    }

    /// The types of which events published after the event `after` are no longer kept (deleted
    /// past the newest `history` of their type, or let go before they were written): a client
    /// resuming after that id has not had them all. Where instances share a database, events
    /// let go before the database numbered them were delivered to nobody and are not counted.
    pub async fn dropped_after(&self, after: i64) -> Result<Vec<NotificationType>> {
        self.history.dropped_after(after).await
    }

    /// Delivers the events written to the shared history (see [`NotificationHub::start_shared`])
    /// to this hub's subscribers, for as long as the hub lives. They are not kept again: they
    /// come from the history.
    pub fn relay(self: &Arc<Self>, mut peers: Box<dyn PeerEvents>) {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let batch = peers.next_batch().await;
                let Some(hub) = hub.upgrade() else { return };
                match batch {
                    Ok(batch) => {
                        if failing {
                            tracing::info!("events of other instances flow again");
                            failing = false;
                        }
                        let own = match &hub.numbering {
                            Numbering::SharedHistory(instance) => Some(instance.as_str()),
                            Numbering::Hub(..) => None,
                        };
                        let mut delivered = Vec::with_capacity(batch.len());
                        for notification in batch {
                            if notification.instance.is_some() && notification.instance.as_deref() == own {
                                delivered.push(notification);
                            } else if notification.kind != NotificationType::SystemMetrics {
                                // Each instance's samples stay its own: a dashboard plots the
                                // live `system_metrics` of the instance it is connected to.
                                hub.relayed.fetch_add(1, Ordering::Relaxed);
                                delivered.push(notification);
                            }
                        }
                        hub.fanout.fan_out(delivered);
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "events of other instances are not arriving; retrying every second");
                            failing = true;
                        }
                        drop(hub);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends events to every subscriber that wants them; drops the ones that cannot keep up.
    /// Each subscriber gets the batch as one queue entry: one wake-up and one write for all its
    /// events (waking another thread, per event, is most of what a fan-out would cost).
    fn fan_out(&self, notifications: Vec<Notification>) {
        if self.listening.load(Ordering::Relaxed) == 0 || notifications.is_empty() {
            return;
        }
        // Serialized before the lock is taken: subscribers connecting meanwhile do not wait.
        let deliveries = EventBatch::new(notifications.into_iter().map(|notification| {
            let message = notification.to_message();
            let text = bytestring::ByteString::from(message.to_string());
            Arc::new(Delivery {
                notification,
                message,
                text,
            })
        }));
        let mut subscribers = self.lock();
        let mut lagging = Vec::new();
        for (id, subscriber) in subscribers.iter() {
            let wanted = |delivery: &&Arc<Delivery>| {
                subscriber
                    .subscription
                    .matches(&delivery.notification, &delivery.message)
            };
            let mut batch = match deliveries.iter().position(|delivery| !wanted(&delivery)) {
                None => deliveries.clone(),
                Some(first_unwanted) => EventBatch::new(
                    deliveries[..first_unwanted]
                        .iter()
                        .chain(deliveries[first_unwanted + 1..].iter().filter(wanted))
                        .cloned(),
                ),
            };
            if batch.is_empty() {
                continue;
            }
            let queued = subscriber.queued.load(Ordering::Relaxed);
            let room = subscriber.capacity.saturating_sub(queued);
            // A subscriber that has taken everything keeps up, whatever the batch's size (the
            // events of other instances come in batches of thousands after a reconnection).
            let keeps_up = batch.len() <= room || queued == 0;
            if !keeps_up {
                // What fits still goes: the subscriber receives everything up to where it fell
                // behind, then its queue closes.
                lagging.push(*id);
                if room == 0 {
                    continue;
                }
                batch = EventBatch::new(batch[..room].iter().cloned());
            }
            let events = batch.len();
            // Counted first, so that a subscriber holding an event finds it counted.
            subscriber.queued.fetch_add(events, Ordering::Relaxed);
            self.sent.fetch_add(events as u64, Ordering::Relaxed);
            if subscriber.sender.send(batch).is_err() {
                self.sent.fetch_sub(events as u64, Ordering::Relaxed);
                if keeps_up {
                    // Closed: this subscriber is gone.
                    lagging.push(*id);
                }
            }
        }
        for id in lagging {
            if let Some(subscriber) = subscribers.remove(&id)
                && !subscriber.sender.is_closed()
            {
                subscriber.lagged.store(true, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    subscriber = id,
                    "notification subscriber could not keep up; disconnected"
                );
            }
        }
        self.listening.store(subscribers.len(), Ordering::Relaxed);
    }
}

impl Notifier for NotificationHub {
    fn publish(&self, kind: NotificationType, data: EventData, source: Option<Cow<'static, str>>) {
        let mut notification = Notification {
            kind,
            data,
            timestamp_ms: now_ms(),
            source,
            id: None,
            instance: None,
        };
        self.published.fetch_add(1, Ordering::Relaxed);
        let (last_id, queue) = match &self.numbering {
            Numbering::Hub(last_id, queue) => (last_id, queue),
            Numbering::SharedHistory(_) => {
                // Subscribers, here too, receive it once written and numbered.
                self.history.keep(notification);
                return;
            }
        };
        // Numbered, kept and queued under one lock, so that ids, the history and every subscriber
        // see concurrent events in one order. Not the subscribers' lock, which the fan-out task
        // holds through a batch: publishing does not wait for deliveries.
        let mut last_id = last_id.lock().unwrap_or_else(|e| e.into_inner());
        let id = (*last_id + 1).max(now_us());
        *last_id = id;
        notification.id = Some(id);
        // With nobody listening (a busy gateway's usual case) the event only goes to the history,
        // without being copied or serialized for subscribers.
        if self.fanout.listening.load(Ordering::Relaxed) == 0 {
            self.history.keep(notification);
            return;
        }
        self.history.keep(notification.clone());
        // Fails only once the fan-out task is gone with the runtime: nobody is left to deliver to.
        let _ = queue.send(notification);
    }
}

/// Notifications in memory; for tests.
#[derive(Default)]
pub struct MemoryNotificationRepository {
    kept: Mutex<Vec<Notification>>,
    /// The newest id deleted or let go of each type.
    dropped: Mutex<HashMap<NotificationType, i64>>,
}

impl MemoryNotificationRepository {
    fn note_dropped(&self, kind: NotificationType, id: i64) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let newest = dropped.entry(kind).or_insert(id);
        *newest = (*newest).max(id);
    }
}

#[async_trait]
impl NotificationRepository for MemoryNotificationRepository {
    async fn save_batch(&self, notifications: &[Notification]) -> Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        for notification in notifications {
            let last = kept.last().and_then(|n| n.id).unwrap_or(0);
            let mut notification = notification.clone();
            notification.id.get_or_insert(last + 1);
            kept.push(notification);
        }
        Ok(())
    }

    async fn history(
        &self,
        kind: Option<NotificationType>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<_> = kept
            .iter()
            .filter(|n| kind.is_none_or(|k| n.kind == k))
            .filter(|n| after.is_none_or(|after| n.id.is_some_and(|id| id > after)))
            .cloned()
            .collect();
        let skip = match after {
            Some(_) => 0,
            None => matching.len().saturating_sub(limit as usize),
        };
        Ok(matching.into_iter().skip(skip).take(limit as usize).collect())
    }

    async fn prune(&self, keep: u64) -> Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: HashMap<NotificationType, u64> = HashMap::new();
        let mut newest_first: Vec<_> = kept.drain(..).rev().collect();
        newest_first.retain(|n| {
            let count = seen.entry(n.kind).or_insert(0);
            *count += 1;
            let kept = *count <= keep;
            if let (false, Some(id)) = (kept, n.id) {
                self.note_dropped(n.kind, id);
            }
            kept
        });
        *kept = newest_first.into_iter().rev().collect();
        Ok(())
    }

    async fn record_dropped(&self, newest: &[(NotificationType, i64)]) -> Result<()> {
        for (kind, id) in newest {
            self.note_dropped(*kind, *id);
        }
        Ok(())
    }

    async fn dropped_after(&self, after: i64) -> Result<Vec<NotificationType>> {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let mut kinds: Vec<_> = dropped
            .iter()
            .filter(|(_, id)| **id > after)
            .map(|(kind, _)| *kind)
            .collect();
        kinds.sort_unstable_by_key(|kind| *kind as usize);
        Ok(kinds)
    }
}

#[cfg(test)]
mod tests;
