//! ICE as signaling carries it: the servers a client is told of, trickled candidates, and the
//! username fragment that tells a restart from the session's own candidates.

use webrtc::peer_connection::RTCIceCandidateInit;

use crate::error::{Error, Result};

/// A STUN or TURN server for the peer's ICE agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// An ICE candidate as signaling carries it (`RTCIceCandidateInit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to: one other than the remote
    /// description's is an ICE restart.
    #[serde(rename = "usernameFragment", default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl From<RTCIceCandidateInit> for IceCandidate {
    fn from(init: RTCIceCandidateInit) -> Self {
        Self {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
        }
    }
}

impl From<IceCandidate> for RTCIceCandidateInit {
    fn from(candidate: IceCandidate) -> Self {
        Self {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            username_fragment: candidate.username_fragment,
            url: None,
        }
    }
}

/// A candidate of another username fragment than the remote description's would restart ICE,
/// which needs a new answer: this server keeps a session's first one.
pub(super) fn refuse_restart(candidate: &IceCandidate, ours: Option<&str>) -> Result<()> {
    match (candidate.username_fragment.as_deref(), ours) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(Error::Unprocessable(format!(
            "ICE restart is not supported: username fragment {theirs:?} is not the session's {ours:?}"
        ))),
        _ => Ok(()),
    }
}

/// The first ICE username fragment an SDP (or SDP fragment) gives.
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}
