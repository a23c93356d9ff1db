//! WebRTC playback of stored media: peers sending shared playbacks ([`peer`]), quality presets
//! and adaptive switching ([`quality`]), the port the faces use ([`service`]) and the hub that
//! implements it, owning streams and connections ([`hub`]).

mod codecs;
mod direct;
pub mod directory;
mod frame_assembly;
pub mod hub;
pub mod ice;
pub mod peer;
pub mod quality;
pub mod receiver;
pub mod service;
mod sink;
mod stack_path;
mod transport_history;

pub use directory::{SharedStream, StreamDirectory};
pub use hub::WebRtcHub;
pub use ice::{IceCandidate, IceServer, ice_ufrag};
pub use peer::{Peer, PeerConfig, PeerEvent, PeerStats, Source};
pub use quality::{AdaptiveSwitch, Quality};
pub use receiver::{ReceivedFrame, Receiver, VideoSeen};
#[cfg(any(test, feature = "mock"))]
pub use service::MockWebRtcService;
pub use service::{
    Answer, ConnectionInfo, ConnectionStats, Offer, PlayRequest, QualityChange, StreamInfo, StreamSpec, Target,
    WebRtcConfig, WebRtcLimits, WebRtcService, WebRtcTotals,
};
