//! The repository contract: every SQL repository test runs twice, against SQLite in a temp dir
//! and against a real PostgreSQL server the tests start (Debian's `postgresql` package).

#[path = "../../../tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::Duration;

use model::access::{NewToken, Refusal, Scope, Scopes, TokenRepository, TokenService};
use model::content::{Block, CachedBlocks, ContentRecord, ContentRepository, Page};
use model::monitoring::{Anomaly, Instances, MemoryMetricsHistory, Metric, MetricsHistory, Sample, SeriesQuery};
use model::notifications::{Notification, NotificationRepository, NotificationType};
use model::stream_records::{
    Direction, HistoryQuery, Outcome, RecordBatch, StreamRecord, StreamRecordRepository, StreamType,
};
use persistence::database::{Database, Engine};
use persistence::{
    SqlCachedBlocks, SqlContentRepository, SqlMetricsHistory, SqlNotifications, SqlStreamRecords, SqlTokens,
};
use serde_json::json;

/// Where one test's database lives. `open` may be called again to see what survived a reopen.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    async fn new(engine: Engine) -> Place {
        match engine {
            Engine::Sqlite => Place::Sqlite(tempfile::tempdir().unwrap()),
            Engine::Postgres => Place::Postgres(postgres::fresh_database().await),
        }
    }

    async fn open(&self) -> sqlx::AnyPool {
        let database = match self {
            Place::Sqlite(dir) => Database::open_sqlite(&dir.path().join("db.sqlite")).await,
            Place::Postgres(url) => Database::connect(url).await,
        };
        database.expect("open the test database").pool
    }
}

/// Each named test, once per engine: `sqlite::name` and `postgres::name`.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Place::new(persistence::database::Engine::Sqlite).await).await
            })*
        }
        mod postgresql {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Place::new(persistence::database::Engine::Postgres).await).await
            })*
        }
    };
}

on_both_engines!(
    content_records_persist_across_reopening_and_keep_pins_and_first_dates,
    tokens_survive_a_reopen_hashed_and_revocable_by_name_or_id,
    stream_records_round_trip_and_filter,
    stream_record_pruning_keeps_the_newest_and_the_recent,
    stream_record_batches_larger_than_one_insert_are_written_whole,
    notification_history_survives_reopening_and_keeps_the_newest_per_type,
    notification_ids_given_are_kept_and_a_reader_resumes_after_one,
    notifications_pruned_or_let_go_are_remembered_by_type_past_a_reopen,
    numbered_notifications_keep_their_data_and_source_whatever_they_hold,
    metrics_history_buckets_in_sql_as_in_memory_and_prunes,
    metrics_of_instances_sharing_a_database_stay_apart,
    the_stream_directory_lists_every_instance_and_ends_the_silent_ones_once,
    a_ticket_issued_on_one_instance_is_redeemed_once_on_another,
    cached_block_records_persist_oldest_first_and_are_forgotten_in_batches,
);

fn content(cid: &str, created_at_ms: i64, pinned: bool) -> ContentRecord {
    ContentRecord {
        cid: cid.parse().unwrap(),
        size: 12,
        name: Some("hello.txt".into()),
        content_type: Some("text/plain".into()),
        cid_version: 0,
        blocks: 1,
        created_at_ms,
        pinned,
    }
}

const A: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
const B: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

async fn content_records_persist_across_reopening_and_keep_pins_and_first_dates(place: Place) {
    {
        let repo = SqlContentRepository::new(place.open().await);
        repo.save(&content(A, 100, true)).await.unwrap();
        repo.save(&content(B, 200, false)).await.unwrap();
        // Adding A again, unpinned and later, neither unpins it nor moves its date.
        let mut again = content(A, 300, false);
        again.name = None;
        repo.save(&again).await.unwrap();
    }
    let repo = SqlContentRepository::new(place.open().await);
    let a = repo.get(&A.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        a,
        content(A, 100, true),
        "every field kept; a missing name does not erase the known one"
    );
    let (page, total) = repo.list(Page { offset: 0, limit: 1 }).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page[0].cid.to_string(), B, "newest first");
    assert!(!page[0].pinned);
    assert_eq!(repo.pinned().await.unwrap(), vec![A.parse().unwrap()]);
    assert!(repo.set_pinned(&B.parse().unwrap(), true).await.unwrap());
    assert_eq!(repo.pinned().await.unwrap().len(), 2);
    assert!(repo.delete(&A.parse().unwrap()).await.unwrap());
    assert!(!repo.delete(&A.parse().unwrap()).await.unwrap());
    assert!(repo.get(&A.parse().unwrap()).await.unwrap().is_none());
}

async fn tokens_survive_a_reopen_hashed_and_revocable_by_name_or_id(place: Place) {
    let tokens = TokenService::new(Arc::new(SqlTokens::new(place.open().await)));
    let issued = tokens
        .create(NewToken {
            name: Some("ci".into()),
            scopes: Scopes::of(&[Scope::ContentWrite, Scope::MetricsRead]),
            ttl: Some(Duration::from_secs(3600)),
        })
        .await
        .unwrap();
    let second = tokens
        .create(NewToken {
            name: None,
            scopes: Scopes::of(&[Scope::Admin]),
            ttl: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        tokens
            .create(NewToken {
                name: Some("ci".into()),
                scopes: Scopes::of(&[Scope::Admin]),
                ttl: None
            })
            .await,
        Err(model::Error::Conflict(_))
    ));

    let repository = SqlTokens::new(place.open().await);
    let listed = repository.list().await.unwrap();
    assert_eq!(listed, vec![issued.token.clone(), second.token.clone()]);
    let tokens = TokenService::new(Arc::new(repository.clone()));
    let caller = tokens.authenticate(&issued.bearer).await.unwrap().unwrap();
    assert_eq!(caller.scopes, Scopes::of(&[Scope::ContentWrite, Scope::MetricsRead]));

    tokens.revoke(&second.token.id).await.unwrap();
    let first_revocation = repository.find(&second.token.id).await.unwrap().unwrap().revoked_at_ms;
    assert!(first_revocation.is_some());
    repository.revoke("ci", 1).await.unwrap();
    repository.revoke("ci", 2).await.unwrap();
    assert_eq!(
        repository.find(&issued.token.id).await.unwrap().unwrap().revoked_at_ms,
        Some(1)
    );
    assert_eq!(
        tokens.authenticate(&second.bearer).await.unwrap().unwrap_err(),
        Refusal::Revoked
    );
    assert!(repository.revoke("nobody", 3).await.unwrap().is_none());
    assert_eq!(repository.count().await.unwrap(), 2);
}

fn stream_record(stream_type: StreamType, started_at_ms: i64) -> StreamRecord {
    StreamRecord {
        stream_type,
        direction: Direction::Inbound,
        path: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o".into(),
        bytes: 12,
        chunks: 1,
        chunk_size: 262_144,
        duration: Duration::from_micros(1500),
        correlation_id: "req-1".into(),
        outcome: Outcome::Aborted,
        started_at_ms,
    }
}

async fn stream_records_round_trip_and_filter(place: Place) {
    let repo = SqlStreamRecords::new(place.open().await);
    let mut records: Vec<_> = (0..10)
        .map(|i| {
            let kind = if i % 2 == 0 {
                StreamType::Websocket
            } else {
                StreamType::Sse
            };
            stream_record(kind, 1000 + i)
        })
        .collect();
    // Text that must survive the batch's encoding on its way in, and numbers at their bounds.
    let newest = records.last_mut().unwrap();
    newest.path = "/ipfs/Qm\"quoted\"/back\\slash/ünïcode ✓/tab\there".into();
    newest.correlation_id = "line\nbreak'; DROP TABLE stream_records; --".into();
    newest.bytes = i64::MAX as u64;
    newest.duration = Duration::ZERO;
    repo.save_batch(&RecordBatch::of(&records)).await.unwrap();
    let all = repo
        .history(&HistoryQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], records[9], "newest first, every field kept");
    let some = repo
        .history(&HistoryQuery {
            since_ms: Some(1002),
            until_ms: Some(1007),
            stream_type: Some(StreamType::Sse),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        some.iter().map(|r| r.started_at_ms).collect::<Vec<_>>(),
        vec![1007, 1005]
    );
}

async fn stream_record_pruning_keeps_the_newest_and_the_recent(place: Place) {
    let repo = SqlStreamRecords::new(place.open().await);
    let records: Vec<_> = (0..100).map(|i| stream_record(StreamType::Http, 1000 + i)).collect();
    repo.save_batch(&RecordBatch::of(&records)).await.unwrap();
    let started = |repo: &SqlStreamRecords| {
        let repo = repo.clone();
        async move {
            let all = repo
                .history(&HistoryQuery {
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            all.iter().map(|r| r.started_at_ms).collect::<Vec<_>>()
        }
    };
    assert_eq!(repo.prune(0, 1000).await.unwrap(), 0, "nothing beyond either bound");
    assert_eq!(repo.prune(0, 30).await.unwrap(), 70);
    assert_eq!(started(&repo).await, (1070..1100).rev().collect::<Vec<_>>());
    assert_eq!(repo.prune(1090, 30).await.unwrap(), 20);
    assert_eq!(started(&repo).await, (1090..1100).rev().collect::<Vec<_>>());
    repo.save_batch(&RecordBatch::of(&[stream_record(StreamType::Sse, 2000)]))
        .await
        .unwrap();
    assert_eq!(
        repo.prune(0, 5).await.unwrap(),
        6,
        "the count bound holds across later writes"
    );
    assert_eq!(started(&repo).await, vec![2000, 1099, 1098, 1097, 1096]);
}

async fn stream_record_batches_larger_than_one_insert_are_written_whole(place: Place) {
    let repo = SqlStreamRecords::new(place.open().await);
    let records: Vec<_> = (0..1234).map(|i| stream_record(StreamType::Http, i)).collect();
    repo.save_batch(&RecordBatch::of(&records)).await.unwrap();
    let all = repo
        .history(&HistoryQuery {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1234);
    assert_eq!(all[0].started_at_ms, 1233);
}

async fn notification_history_survives_reopening_and_keeps_the_newest_per_type(place: Place) {
    {
        let repo = SqlNotifications::new(place.open().await);
        let batch: Vec<_> = (0..5)
            .map(|i| Notification {
                kind: if i == 4 {
                    NotificationType::PinAdded
                } else {
                    NotificationType::ContentAdded
                },
                data: json!({"i": i, "name": "ünïcode ✓"}).into(),
                timestamp_ms: 1000 + i,
                source: Some("test".into()),
                id: None,
                instance: None,
            })
            .collect();
        repo.save_batch(&batch).await.unwrap();
        repo.prune(2).await.unwrap();
    }
    let repo = SqlNotifications::new(place.open().await);
    let all = repo.history(None, None, 10).await.unwrap();
    let order: Vec<_> = all.iter().map(|n| n.data.to_json()["i"].as_i64().unwrap()).collect();
    assert_eq!(
        order,
        vec![2, 3, 4],
        "oldest first; two content_added kept, one pin_added"
    );
    assert_eq!(all[0].source.as_deref(), Some("test"));
    assert_eq!(all[0].data.to_json()["name"], "ünïcode ✓");
    let added = repo
        .history(Some(NotificationType::ContentAdded), None, 1)
        .await
        .unwrap();
    assert_eq!(added[0].data.to_json()["i"], 3);
}

fn numbered(id: Option<i64>, kind: NotificationType) -> Notification {
    Notification {
        kind,
        data: json!({}).into(),
        timestamp_ms: 1,
        source: None,
        id,
        instance: None,
    }
}

async fn notification_ids_given_are_kept_and_a_reader_resumes_after_one(place: Place) {
    let repo = SqlNotifications::new(place.open().await);
    let given = [1_700_000_000_000_001, 1_700_000_000_000_002, 1_700_000_000_000_005];
    let kinds = [
        NotificationType::ContentAdded,
        NotificationType::PinAdded,
        NotificationType::ContentAdded,
    ];
    let batch: Vec<_> = given
        .iter()
        .zip(kinds)
        .map(|(id, kind)| numbered(Some(*id), kind))
        .collect();
    repo.save_batch(&batch).await.unwrap();
    let ids = |events: Vec<Notification>| events.iter().map(|n| n.id.unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(repo.history(None, None, 10).await.unwrap()), given);
    assert_eq!(
        ids(repo.history(None, Some(given[0]), 1).await.unwrap()),
        [given[1]],
        "the first after the id, not the newest"
    );
    assert_eq!(
        ids(repo
            .history(Some(NotificationType::ContentAdded), Some(given[0]), 10)
            .await
            .unwrap()),
        [given[2]]
    );
    assert!(repo.history(None, Some(given[2]), 10).await.unwrap().is_empty());
}

async fn notifications_pruned_or_let_go_are_remembered_by_type_past_a_reopen(place: Place) {
    use NotificationType::{ContentAdded, PinAdded};
    {
        let repo = SqlNotifications::new(place.open().await);
        assert!(repo.dropped_after(0).await.unwrap().is_empty(), "nothing dropped yet");
        let mut batch: Vec<_> = (10..16).map(|id| numbered(Some(id), ContentAdded)).collect();
        batch.push(numbered(Some(16), PinAdded));
        repo.save_batch(&batch).await.unwrap();
        repo.prune(2).await.unwrap();
        let kept = repo.history(None, None, 10).await.unwrap();
        assert_eq!(kept.iter().filter_map(|n| n.id).collect::<Vec<_>>(), [14, 15, 16]);
        assert_eq!(repo.dropped_after(12).await.unwrap(), [ContentAdded]);
        assert!(
            repo.dropped_after(13).await.unwrap().is_empty(),
            "13 was the newest deleted"
        );
        // Let go before they were written: the newest id of each type counts, never an older one.
        repo.record_dropped(&[(PinAdded, 20), (ContentAdded, 11)])
            .await
            .unwrap();
        repo.prune(2).await.unwrap();
    }
    let repo = SqlNotifications::new(place.open().await);
    assert_eq!(repo.dropped_after(0).await.unwrap(), [ContentAdded, PinAdded]);
    assert_eq!(repo.dropped_after(13).await.unwrap(), [PinAdded]);
    assert!(repo.dropped_after(20).await.unwrap().is_empty());
}

async fn numbered_notifications_keep_their_data_and_source_whatever_they_hold(place: Place) {
    let repo = SqlNotifications::new(place.open().await);
    let odd = "quote \" backslash \\ tab \t newline \n'); DROP TABLE notifications; -- ünïcode ✓ \\u0000";
    let batch = vec![
        Notification {
            kind: NotificationType::ContentRetrieved,
            data: json!({"path": odd, "bytes": u64::MAX, "ratio": 0.1, "nested": {"list": [1, "two", null, true]}})
                .into(),
            timestamp_ms: i64::MAX,
            source: Some(odd.to_owned().into()),
            id: Some(1_700_000_000_000_010),
            instance: None,
        },
        Notification {
            kind: NotificationType::SystemError,
            data: json!("a string, not an object").into(),
            timestamp_ms: -1,
            source: None,
            id: Some(1_700_000_000_000_011),
            instance: None,
        },
    ];
    repo.save_batch(&batch).await.unwrap();
    let read = repo.history(None, None, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    for (written, read) in batch.iter().zip(&read) {
        assert_eq!(read.id, written.id);
        assert_eq!(read.kind, written.kind);
        assert_eq!(read.data.to_json(), written.data.to_json());
        assert_eq!(read.timestamp_ms, written.timestamp_ms);
        assert_eq!(read.source, written.source);
        assert_eq!(read.instance, None);
    }
}

async fn metrics_history_buckets_in_sql_as_in_memory_and_prunes(place: Place) {
    let sql = SqlMetricsHistory::new(place.open().await);
    let memory = MemoryMetricsHistory::default();
    for i in 0..300i64 {
        let sample = Sample {
            at_ms: 1_000_000 + i * 1000,
            values: vec![(Metric::Cpu, (i % 17) as f64), (Metric::Rss, 1e6 + i as f64)],
        };
        sql.store(&sample).await.unwrap();
        memory.store(&sample).await.unwrap();
    }
    for step in [None, Some(1000), Some(7000), Some(60_000)] {
        let query = SeriesQuery::bounded(Metric::Cpu, 1_010_500, 1_250_000, step);
        let (from_sql, from_memory) = (sql.query(query).await.unwrap(), memory.query(query).await.unwrap());
        assert_eq!(from_sql.len(), from_memory.len(), "{step:?}");
        for (a, b) in from_sql.iter().zip(&from_memory) {
            assert_eq!((a.t, a.min, a.max), (b.t, b.min, b.max));
            assert!((a.value - b.value).abs() < 1e-9);
        }
    }
    let anomaly = |at_ms| Anomaly {
        at_ms,
        metric: "cpu_percent".into(),
        value: 99.0,
        expected_low: 0.0,
        expected_high: 10.0,
        score: 1.0,
        detector: "relative_entropy".into(),
    };
    sql.store_anomaly(&anomaly(1_100_000)).await.unwrap();
    sql.store_anomaly(&anomaly(1_200_000)).await.unwrap();
    let newest = sql.anomalies(0, 1).await.unwrap();
    assert_eq!(newest, vec![anomaly(1_200_000)]);
    assert_eq!(sql.prune(1_150_000).await.unwrap(), 2 * 150);
    assert_eq!(sql.anomalies(0, 10).await.unwrap().len(), 1);
    let rest = sql
        .query(SeriesQuery::bounded(Metric::Rss, 0, 2_000_000, Some(1000)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 150);
}

async fn cached_block_records_persist_oldest_first_and_are_forgotten_in_batches(place: Place) {
    let keys: Vec<cid::Cid> = (0..1200u32)
        .map(|n| *Block::encode(cid::Version::V1, 0x55, n.to_be_bytes().to_vec().into()).cid())
        .collect();
    {
        let cached = SqlCachedBlocks::new(place.open().await);
        for (n, key) in keys.iter().enumerate() {
            // Recorded newest first: loading orders them by fetch time, not by insertion.
            cached.record(key, n as u64, 10_000 - n as i64).await.unwrap();
        }
        cached.record(&keys[0], 7, 1).await.unwrap(); // fetched again: one row, updated
    }
    let cached = SqlCachedBlocks::new(place.open().await);
    let loaded = cached.load().await.unwrap();
    assert_eq!(loaded.len(), 1200);
    assert_eq!(loaded[0], (keys[0], 7));
    assert_eq!(loaded[1], (keys[1199], 1199));
    cached.forget(&keys[..1100]).await.unwrap(); // more than one batch of deletes
    assert_eq!(cached.load().await.unwrap().len(), 100);
}

async fn metrics_of_instances_sharing_a_database_stay_apart(place: Place) {
    let pool = place.open().await;
    let a = SqlMetricsHistory::new(pool.clone()).of_instance("a");
    let b = SqlMetricsHistory::new(pool).of_instance("b");
    for i in 0..10i64 {
        let at_ms = 1_000_000 + i * 1000;
        a.store(&Sample {
            at_ms,
            values: vec![(Metric::Cpu, 10.0)],
        })
        .await
        .unwrap();
        b.store(&Sample {
            at_ms,
            values: vec![(Metric::Cpu, 90.0)],
        })
        .await
        .unwrap();
    }
    let query = SeriesQuery::bounded(Metric::Cpu, 1_000_000, 1_010_000, Some(10_000));
    let (of_a, of_b) = (a.query(query).await.unwrap(), b.query(query).await.unwrap());
    assert_eq!((of_a[0].value, of_a[0].max), (10.0, 10.0), "A's series is A's alone");
    assert_eq!((of_b[0].value, of_b[0].min), (90.0, 90.0));
    let named = a.query_instances(query, Instances::Named("b".into())).await.unwrap();
    assert_eq!(named, of_b, "A reads B's series by its name");
    let service = a.query_instances(query, Instances::All).await.unwrap();
    assert_eq!(
        (service[0].value, service[0].min, service[0].max),
        (100.0, 100.0, 100.0),
        "CPU adds up"
    );
    for (instance, rate) in [(&a, 0.1), (&b, 0.3)] {
        let sample = Sample {
            at_ms: 1_000_000,
            values: vec![(Metric::ErrorRate, rate)],
        };
        instance.store(&sample).await.unwrap();
    }
    let errors = SeriesQuery::bounded(Metric::ErrorRate, 1_000_000, 1_010_000, Some(10_000));
    let service = b.query_instances(errors, Instances::All).await.unwrap();
    assert!(
        (service[0].value - 0.2).abs() < 1e-9,
        "an error rate is averaged: {service:?}"
    );
    assert_eq!(a.instances().await.unwrap(), vec!["a".to_owned(), "b".to_owned()]);
    let anomaly = Anomaly {
        at_ms: 1_005_000,
        metric: "cpu_percent".into(),
        value: 90.0,
        expected_low: 0.0,
        expected_high: 20.0,
        score: 1.0,
        detector: "windowed_gaussian".into(),
    };
    b.store_anomaly(&anomaly).await.unwrap();
    assert!(a.anomalies(0, 10).await.unwrap().is_empty());
    assert_eq!(b.anomalies(0, 10).await.unwrap(), vec![anomaly]);
    assert_eq!(
        a.prune(1_005_000).await.unwrap(),
        12,
        "old samples go by age, whoever took them"
    );
    assert_eq!(b.query(query).await.unwrap()[0].value, 90.0, "B's recent ones stay");
}

fn shared_stream(id: &str, owner: &str, created_at_ms: i64) -> model::webrtc::SharedStream {
    use model::webrtc::Quality;
    use model::webrtc::service::StreamSpec;
    let cid: cid::Cid = A.parse().unwrap();
    model::webrtc::SharedStream {
        stream_id: id.into(),
        owner: format!("{owner}#1234"),
        owner_name: owner.into(),
        spec: StreamSpec {
            cid,
            renditions: vec![(Quality::High, cid)],
            quality: Quality::Auto,
            ice_servers: Vec::new(),
            buffer: Default::default(),
            progressive: true,
            benchmark: false,
        },
        info: json!({"stream_id": id, "cid": A}),
        created_at_ms,
    }
}

async fn the_stream_directory_lists_every_instance_and_ends_the_silent_ones_once(place: Place) {
    use model::webrtc::StreamDirectory;
    use persistence::SqlStreamDirectory;
    let pool = place.open().await;
    let a = SqlStreamDirectory::new(pool.clone(), "a#1234", "a");
    let b = SqlStreamDirectory::new(pool.clone(), "b#1234", "b");
    let c = SqlStreamDirectory::new(pool, "c#1234", "c");
    a.beat(1_000).await.unwrap();
    b.beat(1_000).await.unwrap();
    c.beat(1_000).await.unwrap();
    a.announce(&shared_stream("st-a1", "a", 10)).await.unwrap();
    a.announce(&shared_stream("st-a2", "a", 20)).await.unwrap();
    b.announce(&shared_stream("st-b1", "b", 30)).await.unwrap();
    assert!(
        a.announce(&shared_stream("st-a1", "a", 40)).await.is_err(),
        "an id is listed once"
    );
    let live = c.live().await.unwrap();
    assert_eq!(
        live,
        vec![
            shared_stream("st-a1", "a", 10),
            shared_stream("st-a2", "a", 20),
            shared_stream("st-b1", "b", 30)
        ]
    );
    assert_eq!(c.find("st-b1").await.unwrap(), Some(shared_stream("st-b1", "b", 30)));
    a.withdraw("st-a2", 2_000).await.unwrap();
    assert_eq!(c.find("st-a2").await.unwrap(), None, "a withdrawn stream is not found");

    // A falls silent; B and C beat on. Both reap: A's live stream ends once, at one of them.
    b.beat(50_000).await.unwrap();
    c.beat(50_000).await.unwrap();
    let by_b = b.reap(30_000, 50_000).await.unwrap();
    let by_c = c.reap(30_000, 50_000).await.unwrap();
    assert_eq!(by_b, vec![shared_stream("st-a1", "a", 10)]);
    assert!(by_c.is_empty());
    assert_eq!(c.live().await.unwrap(), vec![shared_stream("st-b1", "b", 30)]);
    assert!(
        b.reap(30_000, 50_000).await.unwrap().is_empty(),
        "what was ended is ended once"
    );
}

async fn a_ticket_issued_on_one_instance_is_redeemed_once_on_another(place: Place) {
    use model::access::{Caller, CredentialKind, Tickets};
    let pool = place.open().await;
    let on_a = Tickets::new(
        Arc::new(persistence::SqlTickets::new(pool.clone())),
        Duration::from_secs(30),
    );
    let on_b = Tickets::new(
        Arc::new(persistence::SqlTickets::new(pool.clone())),
        Duration::from_secs(30),
    );
    let caller = Caller {
        name: "viewer".into(),
        key: "tok-1".into(),
        scopes: Scopes::of(&[Scope::NotificationsRead, Scope::MetricsRead]),
        credential: CredentialKind::Token,
    };
    let ticket = on_a.issue(&caller).await.unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT ticket_sha256 FROM access_tickets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(stored, ticket.as_bytes(), "the hash is kept, not the ticket");
    let redeemed = on_b.redeem(&ticket).await.unwrap().unwrap();
    assert_eq!(
        redeemed,
        Caller {
            credential: CredentialKind::Ticket,
            ..caller.clone()
        }
    );
    assert_eq!(on_a.redeem(&ticket).await.unwrap(), Err(Refusal::TicketUsed));

    let short = Tickets::new(Arc::new(persistence::SqlTickets::new(pool)), Duration::from_millis(1));
    let expired = short.issue(&caller).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(on_b.redeem(&expired).await.unwrap(), Err(Refusal::TicketExpired));
}

/// Two instances write their events to one PostgreSQL history at once; a listener hands every
/// event over once, in the order of ids, and the ids of what it handed over only grow: a client
/// that saw id N has seen every event below N.
#[tokio::test]
async fn postgresql_numbers_the_events_of_all_instances_in_the_order_listeners_receive_them() {
    use model::notifications::PeerEvents;
    let url = postgres::fresh_database().await;
    let database = Database::connect(&url).await.unwrap();
    let mut listener = persistence::PgPeerEvents::listen(&database).await.unwrap();
    let writers: Vec<_> = ["a#1", "b#1"]
        .into_iter()
        .map(|instance| {
            let repo = SqlNotifications::new(database.pool.clone()).announcing_as(instance);
            tokio::spawn(async move {
                for round in 0..50 {
                    let batch: Vec<_> = (0..(1 + round % 7))
                        .map(|_| numbered(None, NotificationType::CustomEvent))
                        .collect();
                    repo.save_batch(&batch).await.unwrap();
                }
            })
        })
        .collect();
    let expected: usize = 2 * (0..50).map(|round| 1 + round % 7).sum::<usize>();
    let mut received = Vec::new();
    while received.len() < expected {
        let batch = tokio::time::timeout(Duration::from_secs(30), listener.next_batch())
            .await
            .expect("events keep arriving")
            .unwrap();
        received.extend(batch);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let ids: Vec<i64> = received.iter().map(|n| n.id.unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids grow: {ids:?}");
    let instances: std::collections::BTreeSet<_> = received.iter().map(|n| n.instance.clone().unwrap()).collect();
    assert_eq!(instances.len(), 2, "both instances' events, this one's own included");
    let stored = SqlNotifications::new(database.pool.clone())
        .history(None, Some(0), 10_000)
        .await
        .unwrap();
    assert_eq!(stored.len(), expected, "every written event was handed over once");
}
