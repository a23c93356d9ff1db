//! A CAR import into a memory store: every block verified, the DAG checked complete.
#![no_main]
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use model::content::{ContentNode, ContentService, MemoryBlockStore, MemoryContentRepository};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let node = ContentNode::new(
            Arc::new(MemoryBlockStore::new()),
            Arc::new(MemoryContentRepository::new()),
        );
        let input = futures::stream::iter([Ok(Bytes::copy_from_slice(data))]);
        let _ = node.import_car(Box::pin(input), true).await;
    });
});
