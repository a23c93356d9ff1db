//! Content operations publish their events.

mod support;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use model::content::{ContentNode, ContentService, ImportOptions, MemoryBlockStore, MemoryContentRepository};
use model::notifications::{EventData, NotificationType, Notifier};
use support::{add_request, file_stream, pieces};

#[derive(Default)]
struct Recorder(Mutex<Vec<(NotificationType, serde_json::Value)>>);

impl Notifier for Recorder {
    fn publish(&self, kind: NotificationType, data: EventData, source: Option<Cow<'static, str>>) {
        assert_eq!(source.as_deref(), Some("content"));
        self.0.lock().unwrap().push((kind, data.into_json()));
    }
}

#[tokio::test]
async fn adds_pins_and_removals_are_published() {
    let recorder = Arc::new(Recorder::default());
    let node = ContentNode::new(
        Arc::new(MemoryBlockStore::new()),
        Arc::new(MemoryContentRepository::new()),
    )
    .with_notifier(recorder.clone());
    let added = node
        .add(
            pieces(b"hello world\n".to_vec(), 5),
            add_request(ImportOptions::default()),
        )
        .await
        .unwrap();
    node.unpin(&added.cid).await.unwrap();
    node.pin(&added.cid).await.unwrap();
    node.remove(&added.cid).await.unwrap();
    node.import_car(file_stream("gateway-conformance/gateway-raw-block.car"), true)
        .await
        .unwrap();

    let events = recorder.0.lock().unwrap().clone();
    let kinds: Vec<_> = events.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            NotificationType::ContentAdded,
            NotificationType::PinRemoved,
            NotificationType::PinAdded,
            NotificationType::ContentRemoved,
            NotificationType::ContentAdded
        ]
    );
    assert_eq!(events[0].1["cid"], added.cid.to_string());
    assert_eq!(events[0].1["size"], 12);
}
