//! [`Upstream`] over a trustless gateway's HTTP API: `GET /ipfs/{cid}?format=raw` with
//! `Accept: application/vnd.ipld.raw` answers one block's bytes, which the model verifies.
//! Any IPFS HTTP gateway that follows the Trustless Gateway spec serves it (Kubo, Rainbow,
//! another ipfs-stream).

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cid::Cid;
use model::content::remote::MAX_BLOCK_BYTES;
use model::content::{Upstream, UpstreamError};
use reqwest::StatusCode;

use crate::error::Error;

/// The media type of one raw block.
const RAW_BLOCK: &str = "application/vnd.ipld.raw";

/// A trustless gateway reached over HTTP(S).
#[derive(Clone)]
pub struct HttpGateway {
    client: reqwest::Client,
    base: String,
}

impl HttpGateway {
    /// A gateway at `base` (e.g. `https://trustless-gateway.link`); each request gives up after
    /// `timeout`.
    pub fn new(base: &url::Url, timeout: Duration) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Gateway {
                gateway: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            base: base.as_str().trim_end_matches('/').to_owned(),
        })
    }
}

#[async_trait]
impl Upstream for HttpGateway {
    fn name(&self) -> &str {
        &self.base
    }

    async fn block(&self, cid: &Cid) -> Result<Bytes, UpstreamError> {
        let failed = |e: reqwest::Error| UpstreamError::Failed(without_url(e).to_string());
        let mut response = self
            .client
            .get(format!("{}/ipfs/{cid}?format=raw", self.base))
            .header(reqwest::header::ACCEPT, RAW_BLOCK)
            .send()
            .await
            .map_err(failed)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(UpstreamError::NotFound),
            status => return Err(UpstreamError::Failed(format!("HTTP {status}"))),
        }
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
}

/// The error without the request's URL, which the upstream's name already gives.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}
