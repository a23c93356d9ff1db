//! [`Upstream`] over a trustless gateway's HTTP API: `GET /ipfs/{cid}?format=raw` with
//! `Accept: application/vnd.ipld.raw` answers one block's bytes, which the model verifies.
//! Any IPFS HTTP gateway that follows the Trustless Gateway spec serves it (Kubo, Rainbow,
//! another ipfs-stream). A peer (another instance of this service) is asked with `Cache-Control:
//! only-if-cached`, for what it stores.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use model::content::remote::MAX_BLOCK_BYTES;
use model::content::{ByteStream, Upstream, UpstreamError};
use reqwest::StatusCode;

use crate::error::Error;

/// The media type of one raw block.
const RAW_BLOCK: &str = "application/vnd.ipld.raw";

/// A CAR in depth-first order without duplicates, as a range of a file is asked for.
const CAR_V1: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

/// A trustless gateway reached over HTTP(S).
#[derive(Clone)]
pub struct HttpGateway {
    client: reqwest::Client,
    /// For CARs, which may take longer than any one block: no limit on the whole exchange, only on
    /// the silence between two reads.
    streaming: reqwest::Client,
    base: String,
    blocks_only: bool,
    /// Another instance of this service: asked for what it stores only.
    peer: bool,
}

impl HttpGateway {
    /// A gateway at `base` (e.g. `https://trustless-gateway.link`); each request gives up after
    /// `timeout`.
    pub fn new(base: &url::Url, timeout: Duration) -> Result<Self, Error> {
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .build()
                .map_err(|e| Error::Gateway {
                    gateway: base.to_string(),
                    message: e.to_string(),
                })
        };
        let client = build(reqwest::Client::builder().timeout(timeout))?;
        let streaming = build(reqwest::Client::builder().read_timeout(timeout))?;
        Ok(Self {
            client,
            streaming,
            base: base.as_str().trim_end_matches('/').to_owned(),
            blocks_only: false,
            peer: false,
        })
    }

    /// Another instance of this service: every request says `Cache-Control: only-if-cached`,
    /// so that it answers from its own store (504 when it lacks a block, read as "not there")
    /// instead of asking its own upstreams, which may include this instance.
    pub fn peer(mut self) -> Self {
        self.peer = true;
        self
    }

    fn get(&self, client: &reqwest::Client, url: String, accept: &str) -> reqwest::RequestBuilder {
        let request = client.get(url).header(reqwest::header::ACCEPT, accept);
        if self.peer {
            request.header(reqwest::header::CACHE_CONTROL, "only-if-cached")
        } else {
            request
        }
    }

    /// What an answer's status says of the block or CAR asked for.
    fn check(&self, status: StatusCode) -> Result<(), UpstreamError> {
        match status {
            StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            StatusCode::GATEWAY_TIMEOUT if self.peer => Err(UpstreamError::NotFound),
            status => Err(UpstreamError::Failed(format!("HTTP {status}"))),
        }
    }

    /// Asked for raw blocks only, never for CARs (for gateways known to serve no CARs).
    pub fn blocks_only(mut self) -> Self {
        self.blocks_only = true;
        self
    }
}

#[async_trait]
impl Upstream for HttpGateway {
    fn name(&self) -> &str {
        &self.base
    }

    fn serves_cars(&self) -> bool {
        !self.blocks_only
    }

    async fn block(&self, cid: &Cid) -> Result<Bytes, UpstreamError> {
        let failed = |e: reqwest::Error| UpstreamError::Failed(without_url(e).to_string());
        let mut response = self
            .get(&self.client, format!("{}/ipfs/{cid}?format=raw", self.base), RAW_BLOCK)
            .send()
            .await
            .map_err(failed)?;
        self.check(response.status())?;
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BLOCK_BYTES as u64)
        {
            return Err(UpstreamError::Failed(format!(
                "announced {} bytes, over the {MAX_BLOCK_BYTES}-byte block limit",
                response.content_length().unwrap_or_default()
            )));
        }
        // Read with a cap: a gateway that streams on and on is cut off at the limit.
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BLOCK_BYTES {
                return Err(UpstreamError::Failed(format!(
                    "sent more than the {MAX_BLOCK_BYTES}-byte block limit"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn car(&self, cid: &Cid, first: u64, last: u64) -> Result<ByteStream, UpstreamError> {
        let url = format!(
            "{}/ipfs/{cid}?format=car&dag-scope=entity&entity-bytes={first}:{last}",
            self.base
        );
        let response = self
            .get(&self.streaming, url, CAR_V1)
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(without_url(e).to_string()))?;
        self.check(response.status())?;
        let is_car = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/vnd.ipld.car"));
        if !is_car {
            return Err(UpstreamError::Failed(
                "answered a CAR request with something else".into(),
            ));
        }
        Ok(response
            .bytes_stream()
            .map_err(|e| model::Error::Store(format!("reading a CAR: {}", without_url(e))))
            .boxed())
    }
}

/// The error without the request's URL, which the upstream's name already gives.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}
