//! Writing the notification history. Events wait in memory, at most the newest `keep` of each type
//! (older ones would be pruned as soon as they were written), and go to the repository together,
//! in the order they were published. A burst of thousands of events a second then costs at most
//! `keep` rows per type per write, and publishing never waits on storage. The newest id of each
//! type let go unwritten goes to the repository with them, as pruning's does, so that a client
//! resuming from an older id learns that it missed events of that type.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Notification, NotificationRepository, NotificationType};
use crate::error::Result;

/// How long a published event may wait before it is written (a read of the history writes what
/// waits first, so readers never miss it).
pub const WRITE_EVERY: Duration = Duration::from_millis(500);
/// The longest wait between writes while events come faster than the history keeps them (more
/// than `keep` of a type between two writes): each such write waits twice as long as the last.
/// Every row it writes, the next write replaces and the pruning deletes; a busy gateway's
/// `content_retrieved` events were a thousand rows written and deleted every 500 ms.
pub const SLOWEST_WRITE: Duration = Duration::from_secs(4);
/// The same wait where subscribers receive events from the history (a shared database), and so
/// wait for the write: short, yet long enough that a busy server writes, reads back and fans out
/// a batch rather than each event on its own (with 1000 subscribers at 1000 events a second, a
/// 5 ms wait gave a p99 of 197 ms from publishing to delivery, 10 ms gave 108 ms).
pub const SHARED_WRITE_EVERY: Duration = Duration::from_millis(10);
/// How often the history is cut back to its size per type: pruning scans the table.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// The wait before a refused write is tried again (the events wait in memory meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The history of a hub: keeps events, and reads them back.
pub(super) struct History {
    shared: Arc<Shared>,
    /// Wakes the writer; holds one token, so a burst wakes it once.
    wake: mpsc::Sender<()>,
}

struct Shared {
    pending: Mutex<Pending>,
    repository: Arc<dyn NotificationRepository>,
    keep: u64,
    /// One write at a time, so rows go in in publishing order; holds when the table was last pruned.
    writing: tokio::sync::Mutex<Option<Instant>>,
}

/// The newest id let go of each type that had one let go.
type NewestDropped = Vec<(NotificationType, i64)>;

/// Events not yet written: the newest `keep` of each type, each with its publishing order.
struct Pending {
    next: u64,
    /// Whether an event was let go unwritten, for newer ones of its type, since the last take.
    overflowed: bool,
    /// One queue per type, at the type's place in [`NotificationType::ALL`].
    by_type: Vec<VecDeque<(u64, Notification)>>,
    /// The newest id let go unwritten of each type (at its place in `ALL`) since the last take.
    /// Events the repository numbers have no id yet, and nobody has seen them.
    dropped: Vec<Option<i64>>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            next: 0,
            overflowed: false,
            by_type: NotificationType::ALL.iter().map(|_| VecDeque::new()).collect(),
            dropped: vec![None; NotificationType::ALL.len()],
        }
    }
}

impl Pending {
    fn queue(&mut self, kind: NotificationType) -> &mut VecDeque<(u64, Notification)> {
        &mut self.by_type[kind as usize]
    }

    fn push(&mut self, notification: Notification, keep: u64) {
        let order = self.next;
        self.next += 1;
        let kind = notification.kind;
        let queue = self.queue(kind);
        queue.push_back((order, notification));
        let over = queue.len().saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
        let let_go = queue.drain(..over).filter_map(|(_, n)| n.id).max();
        self.note_dropped(kind, let_go);
        self.overflowed |= over > 0;
    }

    fn note_dropped(&mut self, kind: NotificationType, id: Option<i64>) {
        let newest = &mut self.dropped[kind as usize];
        *newest = (*newest).max(id);
    }

    /// Everything waiting, oldest first, and the newest id let go of each type.
    fn take(&mut self) -> (Vec<(u64, Notification)>, NewestDropped) {
        self.overflowed = false;
        let mut all: Vec<_> = self.by_type.iter_mut().flat_map(|queue| queue.drain(..)).collect();
        all.sort_unstable_by_key(|(order, _)| *order);
        let dropped = NotificationType::ALL
            .iter()
            .zip(&mut self.dropped)
            .filter_map(|(kind, newest)| Some((*kind, newest.take()?)))
            .collect();
        (all, dropped)
    }

    /// Puts back a batch that could not be written, before what was published since; the oldest
    /// go past `keep` of a type, and are let go.
    fn put_back(&mut self, batch: Vec<(u64, Notification)>, dropped: NewestDropped, keep: u64) {
        for (kind, id) in dropped {
            self.note_dropped(kind, Some(id));
        }
        for (order, notification) in batch.into_iter().rev() {
            let queue = self.queue(notification.kind);
            if (queue.len() as u64) < keep {
                queue.push_front((order, notification));
            } else {
                self.note_dropped(notification.kind, notification.id);
            }
        }
    }
}

/// How often the history is written.
#[derive(Clone, Copy, Debug)]
pub struct WritePace {
    /// The wait from an event's publishing to its write.
    pub every: Duration,
    /// The longest wait while events overflow the history (see [`SLOWEST_WRITE`]); `every` where
    /// subscribers receive events from the history and so wait for the write.
    pub slowest: Duration,
}

impl History {
    /// Starts the writer on the current runtime. It ends when the history is dropped, after
    /// writing what was waiting.
    pub fn start(repository: Arc<dyn NotificationRepository>, keep: u64, pace: WritePace) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            repository,
            keep,
            writing: tokio::sync::Mutex::new(None),
        });
        let (wake, mut woken) = mpsc::channel(1);
        let writer = shared.clone();
        tokio::spawn(async move {
            let mut wait = pace.every;
            while woken.recv().await.is_some() {
                tokio::time::sleep(wait).await;
                let overflowed = writer.lock().overflowed;
                while !writer.write().await {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                wait = match overflowed {
                    true => (wait * 2).min(pace.slowest.max(pace.every)),
                    false => pace.every,
                };
            }
            writer.write().await;
        });
        Self { shared, wake }
    }

    pub fn keep(&self, notification: Notification) {
        self.shared.lock().push(notification, self.shared.keep);
        // Full means the writer is already due: the send fails at once and nothing is lost.
        let _ = self.wake.try_send(());
    }

    /// Events (of one type, if given), oldest first, including those published a moment ago:
    /// the most recent `limit`, or the first `limit` after the event `after`.
    pub async fn read(
        &self,
        kind: Option<NotificationType>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        self.shared.write().await;
        self.shared.repository.history(kind, after, limit).await
    }

    /// The types of which events published after the event `after` are no longer kept.
    pub async fn dropped_after(&self, after: i64) -> Result<Vec<NotificationType>> {
        self.shared.write().await;
        self.shared.repository.dropped_after(after).await
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what waits; false if the repository refused it (it waits again, to be retried).
    async fn write(&self) -> bool {
        let mut last_prune = self.writing.lock().await;
        let (batch, dropped) = self.lock().take();
        if batch.is_empty() && dropped.is_empty() {
            return true;
        }
        let (orders, events): (Vec<u64>, Vec<Notification>) = batch.into_iter().unzip();
        // What was let go is told first: a reader who finds the newer events finds it too.
        let written = match dropped.is_empty() {
            true => Ok(()),
            false => self.repository.record_dropped(&dropped).await,
        };
        let written = match (written, events.is_empty()) {
            (Ok(()), false) => self.repository.save_batch(&events).await,
            (other, _) => other,
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, events = events.len(), "notification history not written; retrying");
            self.lock()
                .put_back(orders.into_iter().zip(events).collect(), dropped, self.keep);
            return false;
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            *last_prune = Some(Instant::now());
            if let Err(e) = self.repository.prune(self.keep).await {
                tracing::warn!(error = %e, "notification history not pruned");
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::notifications::{MemoryNotificationRepository, MockNotificationRepository};

    const PACE: WritePace = WritePace {
        every: WRITE_EVERY,
        slowest: SLOWEST_WRITE,
    };

    fn event(kind: NotificationType, i: u64) -> Notification {
        Notification {
            kind,
            data: json!({ "i": i }).into(),
            timestamp_ms: i as i64,
            source: None,
            id: Some(i as i64),
            instance: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_written_once_with_the_newest_of_each_type_in_publishing_order() {
        let mut repository = MockNotificationRepository::new();
        repository
            .expect_save_batch()
            .times(1)
            .withf(|batch| {
                let seen: Vec<_> = batch
                    .iter()
                    .map(|n| (n.kind, n.data.to_json()["i"].as_u64().unwrap()))
                    .collect();
                // The pin was published between retrievals 9998 and 9999.
                seen == [
                    (NotificationType::ContentRetrieved, 9_997),
                    (NotificationType::ContentRetrieved, 9_998),
                    (NotificationType::PinAdded, 9_998),
                    (NotificationType::ContentRetrieved, 9_999),
                ]
            })
            .returning(|_| Ok(()));
        repository
            .expect_record_dropped()
            .times(1)
            .withf(|newest| newest == [(NotificationType::ContentRetrieved, 9_996)])
            .returning(|_| Ok(()));
        repository.expect_prune().times(1).returning(|_| Ok(()));
        let history = History::start(Arc::new(repository), 3, PACE);
        for i in 0..10_000 {
            history.keep(event(NotificationType::ContentRetrieved, i));
            if i == 9_998 {
                history.keep(event(NotificationType::PinAdded, i));
            }
        }
        tokio::time::sleep(WRITE_EVERY * 2).await;
        drop(history);
        tokio::time::sleep(WRITE_EVERY).await;
    }

    #[tokio::test(start_paused = true)]
    async fn while_events_overflow_it_is_written_less_often_and_at_pace_again_once_they_do_not() {
        let started = Instant::now();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let mut repository = MockNotificationRepository::new();
        let log = writes.clone();
        repository.expect_save_batch().returning(move |_| {
            log.lock().unwrap().push(started.elapsed());
            Ok(())
        });
        repository.expect_record_dropped().returning(|_| Ok(()));
        repository.expect_prune().returning(|_| Ok(()));
        let history = History::start(Arc::new(repository), 2, PACE);
        // Five events every 100 ms for 12 s: more than `keep` between any two writes.
        for i in 0..600 {
            history.keep(event(NotificationType::ContentRetrieved, i));
            if i % 5 == 4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let busy: Vec<Duration> = writes.lock().unwrap().windows(2).map(|w| w[1] - w[0]).collect();
        let seconds = |s: &[u64]| s.iter().map(|s| Duration::from_millis(s * 1000)).collect::<Vec<_>>();
        assert_eq!(
            busy[..3],
            seconds(&[1, 2, 4]),
            "each overflowing write doubles the wait"
        );
        assert!(busy.iter().all(|gap| *gap <= SLOWEST_WRITE), "{busy:?}");
        // Calm: the first event after the burst may wait out the slowest pace, and its write (with
        // nothing let go) brings the pace back.
        tokio::time::sleep(SLOWEST_WRITE * 2).await;
        history.keep(event(NotificationType::ContentRetrieved, 1_000));
        tokio::time::sleep(SLOWEST_WRITE * 2).await;
        let published = started.elapsed();
        history.keep(event(NotificationType::ContentRetrieved, 1_001));
        tokio::time::sleep(SLOWEST_WRITE).await;
        assert_eq!(*writes.lock().unwrap().last().unwrap() - published, WRITE_EVERY);
    }

    #[test]
    fn every_type_has_its_own_queue() {
        let mut pending = Pending::default();
        for (i, kind) in NotificationType::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "a type's place in ALL is its queue");
            pending.push(event(*kind, i as u64), 1);
        }
        let taken: Vec<_> = pending.take().0.into_iter().map(|(_, n)| n.kind).collect();
        assert_eq!(taken, NotificationType::ALL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_write_is_tried_again_with_what_was_published_since() {
        let kept = Arc::new(MemoryNotificationRepository::default());
        let mut repository = MockNotificationRepository::new();
        let mut sequence = mockall::Sequence::new();
        repository
            .expect_save_batch()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(crate::Error::Store("the database is away".into())));
        let into = kept.clone();
        repository
            .expect_save_batch()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(move |batch| futures::executor::block_on(into.save_batch(batch)));
        repository.expect_prune().returning(|_| Ok(()));
        let history = History::start(Arc::new(repository), 10, PACE);
        history.keep(event(NotificationType::ContentAdded, 1));
        tokio::time::sleep(WRITE_EVERY + WRITE_EVERY / 2).await;
        history.keep(event(NotificationType::ContentAdded, 2));
        tokio::time::sleep(RETRY_AFTER * 2).await;
        let written = kept.history(None, None, 10).await.unwrap();
        assert_eq!(written.iter().map(|n| n.timestamp_ms).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn events_let_go_unwritten_or_pruned_are_told_by_type_after_an_id() {
        let history = History::start(Arc::new(MemoryNotificationRepository::default()), 2, PACE);
        for id in 1..=5 {
            history.keep(event(NotificationType::ContentAdded, id));
        }
        history.keep(event(NotificationType::PinAdded, 6));
        // 1 to 3 never reached the repository: nobody resuming can have them back.
        assert_eq!(
            history.dropped_after(0).await.unwrap(),
            [NotificationType::ContentAdded]
        );
        assert_eq!(
            history.dropped_after(2).await.unwrap(),
            [NotificationType::ContentAdded]
        );
        assert!(history.dropped_after(3).await.unwrap().is_empty(), "4 and 5 are kept");
        // Written, then pruned past the newest two.
        history.keep(event(NotificationType::PinAdded, 7));
        tokio::time::sleep(PRUNE_EVERY).await;
        history.keep(event(NotificationType::PinAdded, 8));
        let kept = history.read(Some(NotificationType::PinAdded), None, 10).await.unwrap();
        assert_eq!(kept.iter().filter_map(|n| n.id).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(
            history.dropped_after(5).await.unwrap(),
            [NotificationType::PinAdded],
            "6 was pruned"
        );
        assert!(history.dropped_after(6).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn what_was_let_go_is_told_again_when_its_write_was_refused() {
        let mut repository = MockNotificationRepository::new();
        let mut sequence = mockall::Sequence::new();
        repository
            .expect_record_dropped()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(crate::Error::Store("the database is away".into())));
        repository
            .expect_record_dropped()
            .times(1)
            .in_sequence(&mut sequence)
            .withf(|newest| newest == [(NotificationType::ContentAdded, 3)])
            .returning(|_| Ok(()));
        repository
            .expect_save_batch()
            .times(1)
            .withf(|batch| batch.iter().filter_map(|n| n.id).eq([4, 5]))
            .returning(|_| Ok(()));
        repository.expect_prune().returning(|_| Ok(()));
        let history = History::start(Arc::new(repository), 2, PACE);
        for id in 1..=5 {
            history.keep(event(NotificationType::ContentAdded, id));
        }
        tokio::time::sleep(WRITE_EVERY + RETRY_AFTER * 2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_sees_what_was_just_published() {
        let history = History::start(Arc::new(MemoryNotificationRepository::default()), 10, PACE);
        history.keep(event(NotificationType::ContentAdded, 1));
        history.keep(event(NotificationType::ContentAdded, 2));
        let read = history.read(None, None, 10).await.unwrap();
        assert_eq!(read.iter().map(|n| n.timestamp_ms).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn what_waits_is_written_when_the_history_is_dropped() {
        let repository = Arc::new(MemoryNotificationRepository::default());
        let history = History::start(repository.clone(), 10, PACE);
        history.keep(event(NotificationType::ContentAdded, 1));
        drop(history);
        tokio::time::sleep(WRITE_EVERY * 2).await;
        assert_eq!(repository.history(None, None, 10).await.unwrap().len(), 1);
    }
}
