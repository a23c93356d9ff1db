//! Text messages from strangers on the WebSocket endpoints, the first byte picking the endpoint:
//! `/ws/upload`'s metadata, `/ws/bidirectional`'s commands, and, answered by their real handlers
//! over an in-memory server (no content, so nothing is played), `/ws/notifications`' actions and
//! `/ws/webrtc`'s signaling messages.
#![no_main]
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use model::content::{ContentNode, ContentService, MemoryBlockStore, MemoryContentRepository};
use model::notifications::{MemoryNotificationRepository, NotificationHub};
use model::stream_records::{HistoryQuery, StreamMetrics, StreamRecord, StreamSummary};
use model::webrtc::WebRtcService;

/// Stream records go nowhere: the handlers' answers are what is fuzzed.
struct NoRecords;

#[async_trait::async_trait]
impl StreamMetrics for NoRecords {
    fn record(&self, _: &StreamRecord) {}
    async fn summary(&self, _: u64) -> model::Result<Vec<StreamSummary>> {
        Ok(Vec::new())
    }
    async fn history(&self, _: &HistoryQuery) -> model::Result<Vec<StreamRecord>> {
        Ok(Vec::new())
    }
    fn dropped(&self) -> u64 {
        0
    }
}

struct Server {
    runtime: tokio::runtime::Runtime,
    state: controllers::AppState,
    webrtc: Arc<dyn WebRtcService>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (state, webrtc) = runtime.block_on(async {
            let content: Arc<dyn ContentService> = Arc::new(ContentNode::new(
                Arc::new(MemoryBlockStore::new()),
                Arc::new(MemoryContentRepository::new()),
            ));
            let hub = Arc::new(NotificationHub::start(
                Arc::new(MemoryNotificationRepository::default()),
                100,
            ));
            let metrics: Arc<dyn StreamMetrics> = Arc::new(NoRecords);
            let state = controllers::AppState::new(content.clone(), metrics.clone(), hub.clone());
            let webrtc: Arc<dyn WebRtcService> = Arc::new(model::webrtc::WebRtcHub::new(
                content,
                hub,
                metrics,
                state.live.clone(),
                tokio::runtime::Handle::current(),
                Default::default(),
            ));
            (state, webrtc)
        });
        Server { runtime, state, webrtc }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let server = server();
    match endpoint % 4 {
        0 => drop(controllers::ws::read_metadata(text)),
        1 => drop(controllers::bidirectional::read_command(text)),
        2 => drop(
            server
                .runtime
                .block_on(controllers::notifications_ws::handle_action(&server.state, 1, 0, text)),
        ),
        _ => {
            let (out, _events) = tokio::sync::mpsc::channel(16);
            let mut owned = HashSet::new();
            let reply = server.runtime.block_on(controllers::webrtc_signaling::handle(
                &server.webrtc,
                &mut owned,
                &out,
                text,
            ));
            drop(reply);
        }
    }
});
