//! A peer's way to its direct path: the route (certificate fingerprints and the selected pair),
//! taken from the stack while DTLS runs, and the path opened over it once, by the first track that
//! sends.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::peer_connection::transport::{RTCIceCandidate, RTCIceCandidateType, RTCIceProtocol};
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

use super::{DirectPath, EstimateOut, TapRuntime};

/// The direct path of a peer, opened by the first track that sends.
pub(crate) struct DirectOpener {
    pub(crate) enabled: bool,
    pub(crate) connection: Arc<dyn PeerConnection>,
    pub(crate) runtime: Arc<TapRuntime>,
    pub(crate) estimate: EstimateOut,
    pub(crate) initial_bitrate_bps: f64,
    /// The certificate fingerprints and the selected pair, taken as soon as ICE is up.
    pub(crate) route: tokio::sync::OnceCell<Route>,
    pub(crate) path: tokio::sync::OnceCell<Option<Arc<DirectPath>>>,
}

/// What opening the direct path needs from the stack besides the SRTP keys.
#[derive(Clone)]
pub(crate) struct Route {
    fingerprints: Vec<String>,
    pair: (SocketAddr, SocketAddr),
}

impl DirectOpener {
    /// The route over `sender`'s transport, asked of the stack until it has one. Taken while DTLS
    /// still runs, so that opening the path when it completes costs no call into the driver.
    pub(crate) async fn route(&self, sender: &dyn RtpSender) -> Option<Route> {
        if !self.enabled {
            return None;
        }
        self.route
            .get_or_try_init(|| async {
                let description = self.connection.local_description().await.ok_or(())?;
                let fingerprints = super::sdp_fingerprints(&description.sdp);
                let pair = selected_udp_pair(sender).await.ok_or(())?;
                Ok::<_, ()>(Route { fingerprints, pair })
            })
            .await
            .ok()
            .cloned()
    }

    /// The path, opened over the route the first time (once DTLS has given the keys).
    pub(crate) async fn path(&self, sender: &dyn RtpSender, transport_cc: Option<u8>) -> Option<Arc<DirectPath>> {
        let route = self.route(sender).await?;
        self.path
            .get_or_init(|| async {
                DirectPath::open(
                    &self.runtime,
                    &route.fingerprints,
                    route.pair,
                    transport_cc,
                    self.estimate.clone(),
                    self.initial_bitrate_bps,
                )
            })
            .await
            .clone()
    }

    pub(crate) fn opened(&self) -> Option<&Arc<DirectPath>> {
        self.path.get().and_then(Option::as_ref)
    }
}

/// The local and remote address of the candidate pair `sender`'s transport selected, if it is a
/// UDP pair that does not go through a relay.
async fn selected_udp_pair(sender: &dyn RtpSender) -> Option<(SocketAddr, SocketAddr)> {
    let transport = sender.transport().await.ok()??;
    let pair = transport.ice_transport().get_selected_candidate_pair().await.ok()??;
    let (local, remote) = (pair.local(), pair.remote());
    let udp = |candidate: &RTCIceCandidate| candidate.protocol == RTCIceProtocol::Udp;
    if local.typ == RTCIceCandidateType::Relay || !udp(local) || !udp(remote) {
        return None;
    }
    let address = |candidate: &RTCIceCandidate| Some(SocketAddr::new(candidate.address.parse().ok()?, candidate.port));
    Some((address(local)?, address(remote)?))
}
