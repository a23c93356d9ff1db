use serde_json::json;

use super::*;

fn hub() -> NotificationHub {
    NotificationHub::start(Arc::new(MemoryNotificationRepository::default()), 3)
}

#[tokio::test]
async fn subscribers_get_the_types_they_asked_for_and_pass_their_filters() {
    let hub = hub();
    let mut added = hub.connect(16);
    hub.subscribe(added.id, &[NotificationType::ContentAdded], None);
    let mut filtered = hub.connect(16);
    let filters = BTreeMap::from([("data.cid".to_owned(), json!("QmA"))]);
    hub.subscribe(filtered.id, &[NotificationType::AllEvents], Some(filters));
    let mut plain = hub.connect(16);
    hub.subscribe(
        plain.id,
        &[NotificationType::AllEvents],
        Some(BTreeMap::from([("size".to_owned(), json!(5))])),
    );

    hub.publish(
        NotificationType::ContentAdded,
        json!({"cid": "QmA", "size": 5}).into(),
        Some("test".into()),
    );
    hub.publish(NotificationType::ContentRemoved, json!({"cid": "QmB"}).into(), None);

    let first = added.recv().await.unwrap();
    assert_eq!(first.notification.kind, NotificationType::ContentAdded);
    assert_eq!(first.message["source"], "test");
    assert_eq!(serde_json::from_str::<Value>(&first.text).unwrap(), first.message);
    assert!(added.try_recv().is_none(), "content_removed was not asked for");
    assert_eq!(filtered.recv().await.unwrap().notification.data.to_json()["cid"], "QmA");
    assert!(filtered.try_recv().is_none(), "the dotted filter left QmB out");
    assert_eq!(
        plain.recv().await.unwrap().notification.kind,
        NotificationType::ContentAdded
    );
    assert_eq!(
        plain.recv().await.unwrap().notification.kind,
        NotificationType::ContentRemoved,
        "a plain key absent from the data passes"
    );
    let metrics = hub.metrics();
    assert_eq!((metrics.active_connections, metrics.notifications_sent), (3, 4));
    assert_eq!(metrics.subscriptions_by_type["all_events"], 2);
}

fn numbered(id: i64, kind: NotificationType) -> Notification {
    Notification {
        kind,
        data: json!({"n": id}).into(),
        timestamp_ms: 1,
        source: None,
        id: Some(id),
        instance: None,
    }
}

#[tokio::test]
async fn a_batch_is_one_entry_shared_by_those_who_want_it_all_and_filtered_for_the_others() {
    let hub = hub();
    let mut all = hub.connect(16);
    hub.subscribe(all.id, &[NotificationType::AllEvents], None);
    let mut also_all = hub.connect(16);
    hub.subscribe(also_all.id, &[NotificationType::AllEvents], None);
    let mut some = hub.connect(16);
    hub.subscribe(some.id, &[NotificationType::ContentAdded], None);
    hub.fanout.fan_out(vec![
        numbered(1, NotificationType::ContentAdded),
        numbered(2, NotificationType::PinAdded),
        numbered(3, NotificationType::ContentAdded),
    ]);
    let first = all.recv_batch().await.unwrap();
    assert!(all.try_recv().is_none(), "one entry for the batch");
    let second = also_all.recv_batch().await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "the same batch, not a copy");
    let filtered = some.recv_batch().await.unwrap();
    let ids = |batch: &Events| batch.iter().map(|d| d.notification.id.unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&first), [1, 2, 3]);
    assert_eq!(ids(&filtered), [1, 3], "in order, without what it did not ask for");
    assert_eq!(hub.metrics().notifications_sent, 8);
}

#[tokio::test]
async fn a_shared_batch_is_encoded_once_for_every_subscriber() {
    let hub = hub();
    let (mut one, mut other) = (hub.connect(16), hub.connect(16));
    hub.subscribe(one.id, &[NotificationType::AllEvents], None);
    hub.subscribe(other.id, &[NotificationType::AllEvents], None);
    hub.fanout.fan_out(vec![
        numbered(1, NotificationType::ContentAdded),
        numbered(2, NotificationType::PinAdded),
    ]);
    let encodings = AtomicUsize::new(0);
    let encode = |deliveries: &[Arc<Delivery>]| {
        encodings.fetch_add(1, Ordering::Relaxed);
        Bytes::from(
            deliveries
                .iter()
                .map(|d| d.text.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    let first = one.recv_batch().await.unwrap().wire_form(encode);
    let second = other.recv_batch().await.unwrap().wire_form(encode);
    assert_eq!(encodings.load(Ordering::Relaxed), 1);
    assert_eq!(first.as_ptr(), second.as_ptr(), "the same bytes, not a copy");
    assert_eq!(
        first.iter().filter(|byte| **byte == b'\n').count(),
        1,
        "both events, once each"
    );
}

#[tokio::test]
async fn a_batch_larger_than_the_room_left_delivers_what_fits_then_closes_the_queue() {
    let hub = hub();
    let mut slow = hub.connect(2);
    hub.subscribe(slow.id, &[NotificationType::AllEvents], None);
    hub.fanout.fan_out(vec![numbered(1, NotificationType::CustomEvent)]);
    hub.fanout
        .fan_out((2..=4).map(|id| numbered(id, NotificationType::CustomEvent)).collect());
    assert!(slow.lagged.load(Ordering::Relaxed));
    assert_eq!(slow.recv().await.unwrap().notification.id, Some(1));
    assert_eq!(slow.recv().await.unwrap().notification.id, Some(2));
    assert!(slow.recv().await.is_none(), "the bound counts events, not batches");
    assert_eq!(hub.metrics().slow_consumers_dropped, 1);
}

#[tokio::test]
async fn a_subscriber_with_an_empty_queue_takes_a_batch_larger_than_its_bound() {
    let hub = hub();
    let mut caught_up = hub.connect(2);
    hub.subscribe(caught_up.id, &[NotificationType::AllEvents], None);
    hub.fanout
        .fan_out((1..=5).map(|id| numbered(id, NotificationType::CustomEvent)).collect());
    assert!(!caught_up.lagged.load(Ordering::Relaxed));
    assert_eq!(caught_up.recv_batch().await.unwrap().len(), 5);
    hub.fanout.fan_out(vec![numbered(6, NotificationType::CustomEvent)]);
    assert_eq!(
        caught_up.recv().await.unwrap().notification.id,
        Some(6),
        "and stays subscribed"
    );
}

#[tokio::test]
async fn a_subscriber_that_cannot_keep_up_is_dropped_and_others_are_not() {
    let hub = hub();
    let slow = hub.connect(2);
    hub.subscribe(slow.id, &[NotificationType::AllEvents], None);
    let mut fast = hub.connect(100);
    hub.subscribe(fast.id, &[NotificationType::AllEvents], None);
    for i in 0..10 {
        hub.publish(NotificationType::CustomEvent, json!({"i": i}).into(), None);
        fast.recv().await.unwrap();
    }
    assert!(slow.lagged.load(Ordering::Relaxed));
    let mut slow = slow;
    assert_eq!(
        slow.recv().await.unwrap().notification.data.to_json()["i"],
        0,
        "what was queued is still delivered"
    );
    assert_eq!(slow.recv().await.unwrap().notification.data.to_json()["i"], 1);
    assert!(slow.recv().await.is_none(), "then the queue closes");
    assert_eq!(hub.metrics().slow_consumers_dropped, 1);
}

#[tokio::test]
async fn history_keeps_the_last_n_per_type() {
    let hub = hub();
    for i in 0..5 {
        hub.publish(NotificationType::SystemInfo, json!({"i": i}).into(), None);
    }
    hub.publish(NotificationType::PinAdded, json!({}).into(), None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let history = hub.history(None, None, 100).await.unwrap();
        if history.len() == 4 {
            let infos: Vec<_> = history
                .iter()
                .filter(|n| n.kind == NotificationType::SystemInfo)
                .map(|n| n.data.to_json()["i"].clone())
                .collect();
            assert_eq!(infos, vec![json!(2), json!(3), json!(4)]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "history was not written: {history:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        hub.history(Some(NotificationType::PinAdded), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Hands over one batch, then nothing more.
struct OneBatch(Option<Vec<Notification>>);

#[async_trait]
impl PeerEvents for OneBatch {
    async fn next_batch(&mut self) -> Result<Vec<Notification>> {
        match self.0.take() {
            Some(batch) => Ok(batch),
            None => std::future::pending().await,
        }
    }
}

#[tokio::test]
async fn other_instances_events_reach_subscribers_but_not_their_samples() {
    let hub = Arc::new(hub());
    let mut everything = hub.connect(16);
    hub.subscribe(everything.id, &[NotificationType::AllEvents], None);
    let event = |kind| Notification {
        kind,
        data: json!({"cid": "QmA"}).into(),
        timestamp_ms: 1,
        source: Some("content".into()),
        id: Some(1),
        instance: Some("b#1".into()),
    };
    hub.relay(Box::new(OneBatch(Some(vec![
        event(NotificationType::ContentAdded),
        event(NotificationType::SystemMetrics),
        event(NotificationType::PinAdded),
    ]))));
    let first = everything.recv().await.unwrap();
    let second = everything.recv().await.unwrap();
    assert_eq!(
        (first.notification.kind, second.notification.kind),
        (NotificationType::ContentAdded, NotificationType::PinAdded)
    );
    assert_eq!(hub.metrics().notifications_relayed, 2);
    assert!(
        hub.history(None, None, 10).await.unwrap().is_empty(),
        "their instance keeps them, not this one"
    );
}

#[tokio::test]
async fn ids_follow_the_order_of_delivery_and_a_client_resumes_after_the_last_it_saw() {
    let hub = hub();
    let mut subscriber = hub.connect(16);
    hub.subscribe(subscriber.id, &[NotificationType::AllEvents], None);
    for i in 0..3 {
        hub.publish(NotificationType::ContentAdded, json!({"i": i}).into(), None);
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let delivery = subscriber.recv().await.unwrap();
        assert_eq!(delivery.message["id"], json!(delivery.notification.id.unwrap()));
        ids.push(delivery.notification.id.unwrap());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert!(
        ids[0] >= now_us() - 60_000_000,
        "ids follow the clock, so a restart continues above them"
    );
    let missed = hub.history(None, Some(ids[0]), 10).await.unwrap();
    assert_eq!(
        missed.iter().map(|n| n.id.unwrap()).collect::<Vec<_>>(),
        ids[1..],
        "the events after the first, oldest first"
    );
    let first_only = hub.history(None, Some(ids[0] - 1), 1).await.unwrap();
    assert_eq!(
        first_only[0].id,
        Some(ids[0]),
        "the first `limit` after, not the newest"
    );
}

#[tokio::test]
async fn on_a_shared_history_subscribers_receive_events_once_written_and_numbered() {
    let repository = Arc::new(MemoryNotificationRepository::default());
    let hub = Arc::new(NotificationHub::start_shared(repository.clone(), 10, "a#1"));
    let mut subscriber = hub.connect(16);
    hub.subscribe(subscriber.id, &[NotificationType::AllEvents], None);
    hub.publish(NotificationType::SystemMetrics, json!({"cpu": 1}).into(), None);
    hub.publish(NotificationType::ContentAdded, json!({"cid": "QmA"}).into(), None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        subscriber.try_recv().is_none(),
        "not delivered before the history numbers it"
    );
    let written = hub.history(None, None, 10).await.unwrap();
    assert_eq!(written.iter().map(|n| n.id).collect::<Vec<_>>(), [Some(1), Some(2)]);
    // The shared history hands them back (marked as this instance's), with another's.
    let own = |mut n: Notification| {
        n.instance = Some("a#1".into());
        n
    };
    let other = Notification {
        kind: NotificationType::SystemMetrics,
        data: json!({"cpu": 2}).into(),
        timestamp_ms: 1,
        source: None,
        id: Some(3),
        instance: Some("b#1".into()),
    };
    hub.relay(Box::new(OneBatch(Some(vec![
        own(written[0].clone()),
        own(written[1].clone()),
        other,
    ]))));
    let first = subscriber.recv().await.unwrap();
    let second = subscriber.recv().await.unwrap();
    assert_eq!(
        (first.notification.kind, second.notification.kind),
        (NotificationType::SystemMetrics, NotificationType::ContentAdded),
        "its own samples reach its own subscribers"
    );
    assert_eq!(
        (first.message["id"].clone(), first.message["instance"].clone()),
        (json!(1), json!("a#1"))
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(subscriber.try_recv().is_none(), "another's samples stay its own");
    assert_eq!(
        hub.metrics().notifications_relayed,
        0,
        "its own events are not relayed ones"
    );
}
