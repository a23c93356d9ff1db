//! [`BlockStore`] over a Kubo node's HTTP RPC API (`/api/v0`): blocks via `block/get|put|stat|rm`,
//! pins via `pin/add|rm`. The model walks DAGs itself, so every block read from Kubo is verified
//! like a local one, and imports compute their CIDs locally (equal to Kubo's own `add`).
//!
//! Kubo keeps its own pins and garbage collection: listing every block is not offered here, so the
//! model's collection and verification refuse to run on this store (use `ipfs repo gc|verify`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use model::content::block::{DAG_PB, RAW};
use model::content::{Block, BlockBatch, BlockStore};
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::error::Error;

/// Block uploads in flight per batch.
const PUTS_IN_FLIGHT: usize = 8;

/// A Kubo node reached over its RPC API.
#[derive(Clone)]
pub struct KuboBlockStore {
    client: reqwest::Client,
    api: String,
}

/// Kubo's error body: `{"Message": ..., "Code": 0, "Type": "error"}`.
#[derive(Deserialize)]
struct KuboError {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct BlockPutReply {
    #[serde(rename = "Key")]
    key: String,
}

impl KuboBlockStore {
    /// A store over the API at `api` (e.g. `http://127.0.0.1:5001`).
    pub fn new(api: &str, timeout: Duration) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Kubo {
                endpoint: api.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            api: api.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/v0/{endpoint}", self.api)
    }

    /// POSTs to an endpoint; a non-2xx reply becomes an error carrying Kubo's message.
    async fn call(
        &self,
        endpoint: &str,
        args: &[(&str, String)],
        form: Option<Form>,
    ) -> Result<reqwest::Response, Error> {
        let failed = |message: String| Error::Kubo {
            endpoint: endpoint.to_owned(),
            message,
        };
        let mut request = self.client.post(self.url(endpoint)).query(args);
        if let Some(form) = form {
            request = request.multipart(form);
        }
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<KuboError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        Err(failed(message))
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Kubo { message, .. } if message.contains("not found"))
}

#[async_trait]
impl BlockStore for KuboBlockStore {
    async fn get(&self, cid: &Cid) -> model::Result<Option<Bytes>> {
        match self.call("block/get", &[("arg", cid.to_string())], None).await {
            Ok(response) => Ok(Some(response.bytes().await.map_err(|e| Error::Kubo {
                endpoint: "block/get".into(),
                message: e.to_string(),
            })?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn has(&self, cid: &Cid) -> model::Result<bool> {
        match self.call("block/stat", &[("arg", cid.to_string())], None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn begin(&self) -> model::Result<Box<dyn BlockBatch>> {
        Ok(Box::new(KuboBatch {
            store: self.clone(),
            puts: JoinSet::new(),
        }))
    }

    async fn delete(&self, cid: &Cid) -> model::Result<bool> {
        match self.call("block/rm", &[("arg", cid.to_string())], None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> model::Result<Vec<Cid>> {
        Err(model::Error::Unsupported(
            "listing every block (Kubo runs its own `repo gc` and `repo verify`)",
        ))
    }

    async fn pin(&self, root: &Cid) -> model::Result<()> {
        self.call("pin/add", &[("arg", root.to_string())], None).await?;
        Ok(())
    }

    async fn unpin(&self, root: &Cid) -> model::Result<()> {
        match self.call("pin/rm", &[("arg", root.to_string())], None).await {
            Ok(_) => Ok(()),
            Err(Error::Kubo { message, .. }) if message.contains("not pinned") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Kubo has no staging area: blocks are sent as they come, and only the pin (taken after commit)
/// keeps them. An aborted batch leaves unpinned blocks that Kubo's own collection removes.
struct KuboBatch {
    store: KuboBlockStore,
    puts: JoinSet<Result<(), Error>>,
}

impl KuboBatch {
    async fn settle_one(&mut self) -> model::Result<()> {
        match self.puts.join_next().await {
            Some(joined) => Ok(joined.map_err(|e| model::Error::task("block upload", e))??),
            None => Ok(()),
        }
    }
}

async fn put_block(store: KuboBlockStore, block: Block) -> Result<(), Error> {
    let codec = match block.cid().codec() {
        DAG_PB => "dag-pb",
        RAW => "raw",
        other => {
            return Err(Error::Kubo {
                endpoint: "block/put".into(),
                message: format!("codec 0x{other:x} cannot be stored"),
            });
        }
    };
    let (cid, data) = block.into_parts();
    let form = Form::new().part("file", Part::stream(data).file_name("block"));
    let args = [
        ("cid-codec", codec.to_owned()),
        ("mhtype", "sha2-256".to_owned()),
        ("pin", "false".to_owned()),
    ];
    let reply: BlockPutReply = store
        .call("block/put", &args, Some(form))
        .await?
        .json()
        .await
        .map_err(|e| Error::Kubo {
            endpoint: "block/put".into(),
            message: format!("unexpected reply: {e}"),
        })?;
    let stored = Cid::try_from(reply.key.as_str()).map_err(|e| Error::Kubo {
        endpoint: "block/put".into(),
        message: format!("reply key {:?} is not a CID: {e}", reply.key),
    })?;
    if stored.hash() != cid.hash() {
        return Err(Error::Kubo {
            endpoint: "block/put".into(),
            message: format!("Kubo stored {stored} for block {cid}"),
        });
    }
    Ok(())
}

#[async_trait]
impl BlockBatch for KuboBatch {
    async fn put(&mut self, block: Block) -> model::Result<()> {
        while self.puts.len() >= PUTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        self.puts.spawn(put_block(self.store.clone(), block));
        Ok(())
    }

    async fn commit(mut self: Box<Self>, _roots: &[Cid]) -> model::Result<()> {
        while !self.puts.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }
}
