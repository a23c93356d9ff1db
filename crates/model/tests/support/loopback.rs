//! A WebRTC hub over in-memory content with a recording notifier, and webrtc-rs viewers that play
//! from it on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cid::Cid;
use model::content::{ContentService, ImportOptions};
use model::media::playback::BufferSettings;
use model::monitoring::LiveStats;
use model::notifications::{MockNotifier, NotificationType};
use model::stream_records::{MockStreamMetrics, StreamType};
use model::webrtc::{
    PeerEvent, PlayRequest, Quality, Receiver, StreamSpec, Target, WebRtcConfig, WebRtcHub, WebRtcLimits, WebRtcService,
};
use tokio::sync::mpsc;

pub struct Fixture {
    pub hub: Arc<WebRtcHub>,
    pub content: Arc<dyn ContentService>,
    pub events: Arc<std::sync::Mutex<Vec<NotificationType>>>,
    /// The same notifications with their data.
    pub notifications: Arc<std::sync::Mutex<Vec<(NotificationType, serde_json::Value)>>>,
    pub live: Arc<LiveStats>,
}

pub async fn fixture(limits: WebRtcLimits) -> Fixture {
    fixture_with(WebRtcConfig {
        limits,
        ..Default::default()
    })
    .await
}

pub async fn fixture_with(config: WebRtcConfig) -> Fixture {
    let (node, _) = super::node();
    let content: Arc<dyn ContentService> = Arc::new(node);
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut notifier = MockNotifier::new();
    let notifications = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let detailed = notifications.clone();
    notifier.expect_publish().returning(move |kind, data, _| {
        seen.lock().unwrap().push(kind);
        detailed.lock().unwrap().push((kind, data.into_json()));
    });
    let mut metrics = MockStreamMetrics::new();
    metrics
        .expect_record()
        .withf(|record| record.stream_type == StreamType::Webrtc)
        .returning(|_| ());
    let live = Arc::new(LiveStats::default());
    let hub = WebRtcHub::new(
        content.clone(),
        Arc::new(notifier),
        Arc::new(metrics),
        live.clone(),
        tokio::runtime::Handle::current(),
        config,
    );
    Fixture {
        hub,
        content,
        events,
        notifications,
        live,
    }
}

pub async fn add(content: &Arc<dyn ContentService>, name: &str) -> Cid {
    content
        .add(
            super::file_stream(&format!("media/{name}")),
            super::add_request(ImportOptions::default()),
        )
        .await
        .unwrap()
        .cid
}

/// Relays candidates both ways until the tasks are aborted.
fn trickle(
    hub: Arc<WebRtcHub>,
    pc_id: String,
    receiver: Arc<Receiver>,
    mut server: mpsc::Receiver<PeerEvent>,
    mut client: mpsc::Receiver<model::webrtc::IceCandidate>,
) -> [tokio::task::JoinHandle<()>; 2] {
    let to_client = receiver.clone();
    let a = tokio::spawn(async move {
        while let Some(event) = server.recv().await {
            if let PeerEvent::Candidate(candidate) = event {
                let _ = to_client.add_candidate(candidate).await;
            }
        }
    });
    let b = tokio::spawn(async move {
        while let Some(candidate) = client.recv().await {
            let _ = hub.add_candidate(&pc_id, candidate).await;
        }
    });
    [a, b]
}

/// Waits up to a second for an asynchronous condition.
pub async fn wait_for_async<F: std::future::Future<Output = bool>>(what: impl Fn() -> F) -> bool {
    for _ in 0..60 {
        if what().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A stream of one rendition with the default settings.
pub fn spec(cid: Cid) -> StreamSpec {
    StreamSpec {
        cid,
        renditions: vec![],
        quality: Quality::Auto,
        ice_servers: vec![],
        buffer: BufferSettings::default(),
        progressive: true,
        benchmark: false,
    }
}

/// A request to play a created stream as it is set.
pub fn stream_request(stream_id: &str) -> PlayRequest {
    PlayRequest {
        target: Target::Stream(stream_id.to_owned()),
        quality: None,
        buffer: None,
        progressive: None,
    }
}

/// A webrtc-rs receiver whose offer to play `request` was answered, connected; and the id of its
/// connection.
pub async fn receive(hub: &Arc<WebRtcHub>, request: PlayRequest) -> (Receiver, String) {
    let (receiver, _) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let offer = receiver.offer(Duration::from_secs(2)).await.unwrap();
    let answer = hub.accept(request, &offer).await.unwrap();
    receiver.accept_answer(&answer.sdp).await.unwrap();
    assert!(receiver.connected(Duration::from_secs(10)).await);
    (receiver, answer.pc_id)
}

/// A webrtc-rs viewer that answered the server's offer, connected, with candidates relayed both ways.
pub struct Viewer {
    pub pc_id: String,
    pub receiver: Arc<Receiver>,
    pub answer: String,
    pub relays: [tokio::task::JoinHandle<()>; 2],
}

impl Viewer {
    /// `receiver` answers `offer`; returns once connected.
    pub async fn join(
        hub: &Arc<WebRtcHub>,
        offer: model::webrtc::Offer,
        (receiver, candidates): (Receiver, mpsc::Receiver<model::webrtc::IceCandidate>),
    ) -> Self {
        let receiver = Arc::new(receiver);
        let answer = receiver.answer(&offer.sdp).await.unwrap();
        hub.answer(&offer.pc_id, &answer).await.unwrap();
        let relays = trickle(
            hub.clone(),
            offer.pc_id.clone(),
            receiver.clone(),
            offer.events,
            candidates,
        );
        assert!(receiver.connected(Duration::from_secs(10)).await, "connected");
        Self {
            pc_id: offer.pc_id,
            receiver,
            answer,
            relays,
        }
    }

    pub async fn leave(self) {
        self.receiver.close().await;
        self.relays.iter().for_each(|r| r.abort());
    }
}

pub async fn wait_for(what: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    what()
}
