//! WebRTC playback of stored media: peers sending shared playbacks ([`peer`]), quality presets
//! and adaptive switching ([`quality`]), and the service that owns streams and connections
//! ([`service`]).

mod direct;
pub mod peer;
pub mod quality;
pub mod receiver;
pub mod service;
mod transport_history;

pub use peer::{IceCandidate, IceServer, Peer, PeerConfig, PeerEvent, PeerStats, Source, ice_ufrag};
pub use quality::{AdaptiveSwitch, Quality};
pub use receiver::{ReceivedFrame, Receiver};
#[cfg(any(test, feature = "mock"))]
pub use service::MockWebRtcService;
pub use service::{
    Answer, ConnectionInfo, ConnectionStats, Offer, PlayRequest, QualityChange, StreamInfo, StreamSpec, Target,
    WebRtcConfig, WebRtcHub, WebRtcLimits, WebRtcService, WebRtcTotals,
};
