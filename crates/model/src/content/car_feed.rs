//! A range of a remote file as one CAR (`?format=car&dag-scope=entity&entity-bytes=from:to`): one
//! request instead of one per block, its blocks taken in the order the reader walks the DAG.
//!
//! Nothing in the CAR is trusted: each block must be the very one the walk needs next (a CAR in
//! depth-first order, as the trustless gateway spec orders it, holds exactly these) and must hash
//! to its CID. Any other block, a block that does not match, or a CAR cut short ends the feed, and
//! the reader goes on block by block from there (the upstream is put aside for a wrong block, as
//! the per-block path does).

use bytes::Bytes;
use cid::Cid;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iroh_car::CarReader;
use tokio_util::io::StreamReader;

use super::block::Block;
use super::remote::{Remote, UpstreamHandle};
use super::store::{ByteStream, storage_key};

/// Blocks arriving from one upstream's CAR, each checked against what the walk expects.
pub struct CarFeed {
    upstream: UpstreamHandle,
    blocks: BoxStream<'static, Result<(Cid, Vec<u8>), String>>,
}

impl CarFeed {
    /// Reads `car` (the upstream's answer) as a CAR v1 stream of blocks.
    pub(crate) fn new(upstream: UpstreamHandle, car: ByteStream) -> Self {
        let reader = StreamReader::new(car.map_err(|e| std::io::Error::other(e.to_string())));
        let blocks = futures::stream::once(async move { CarReader::new(reader).await })
            .flat_map(|opened| match opened {
                Ok(reader) => reader.stream().map_err(|e| e.to_string()).boxed(),
                Err(e) => futures::stream::once(async move { Err(e.to_string()) }).boxed(),
            })
            .boxed();
        Self { upstream, blocks }
    }

    /// The next block, if it is `expected` and verifies; `None` ends the feed (the caller reads on
    /// block by block), having told the upstream's record why.
    pub async fn next_expected(&mut self, remote: &Remote, expected: &Cid) -> Option<Block> {
        let (cid, data) = match self.blocks.next().await {
            Some(Ok(block)) => block,
            Some(Err(reason)) => {
                remote.car_failed(&self.upstream, &format!("unreadable CAR: {reason}"));
                return None;
            }
            None => {
                remote.car_failed(&self.upstream, "the CAR ended before the blocks the range needs");
                return None;
            }
        };
        if storage_key(&cid) != storage_key(expected) {
            remote.car_sent_wrong_block(&self.upstream, &format!("sent {cid} where the walk needs {expected}"));
            return None;
        }
        remote
            .check_from(&self.upstream, *expected, Bytes::from(data))
            .await
            .map(|data| Block::trusted(*expected, data))
    }
}
