//! The RTP codecs a server peer registers and sends, and how a track's codec is announced (H.264
//! main beside constrained baseline, so a receiver sets its decoder up for what it will get).

use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};

use crate::media::{Codec, TrackInfo};

pub(crate) fn rtp_codec(codec: Codec) -> (RTCRtpCodec, u8, RtpCodecKind) {
    let (mime, rate, channels, fmtp, payload_type) = match codec {
        Codec::H264 => (
            "video/H264",
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        Codec::Vp8 => ("video/VP8", 90_000, 0, "", 96),
        Codec::Vp9 => ("video/VP9", 90_000, 0, "profile-id=0", 98),
        Codec::Av1 => ("video/AV1", 90_000, 0, "", 41),
        Codec::Opus => ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111),
    };
    let kind = if codec.is_video() {
        RtpCodecKind::Video
    } else {
        RtpCodecKind::Audio
    };
    let codec = RTCRtpCodec {
        mime_type: mime.into(),
        clock_rate: rate,
        channels,
        sdp_fmtp_line: fmtp.into(),
        rtcp_feedback: vec![],
    };
    (codec, payload_type, kind)
}

/// H.264 main profile (`profile_idc` 77).
const H264_MAIN: u8 = 77;
/// How main-profile H.264 is announced, beside the constrained baseline of [`rtp_codec`], so a
/// receiver sets its decoder up for what it will get.
const H264_MAIN_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f";
pub(crate) const H264_MAIN_PAYLOAD_TYPE: u8 = 110;

/// H.264 main as registered beside the codecs of [`rtp_codec`].
pub(crate) fn h264_main_codec() -> RTCRtpCodecParameters {
    let (mut rtp_codec, _, _) = rtp_codec(Codec::H264);
    rtp_codec.sdp_fmtp_line = H264_MAIN_FMTP.into();
    RTCRtpCodecParameters {
        rtp_codec,
        payload_type: H264_MAIN_PAYLOAD_TYPE,
    }
}

/// The RTP codec a track is sent as: its codec's, or H.264 main for main-profile media.
pub(crate) fn track_codec(track: &TrackInfo) -> (RTCRtpCodec, RtpCodecKind) {
    let (codec, _, kind) = rtp_codec(track.codec);
    if track.codec == Codec::H264 && track.h264_profile == Some(H264_MAIN) {
        return (h264_main_codec().rtp_codec, kind);
    }
    (codec, kind)
}

/// The profile part (`profile_idc` and constraints) of an fmtp line's `profile-level-id`.
pub(crate) fn h264_profile_of(fmtp: &str) -> Option<String> {
    fmtp.split(';')
        .find_map(|parameter| parameter.trim().strip_prefix("profile-level-id="))
        .map(|id| id.get(..4).unwrap_or(id).to_ascii_lowercase())
}

/// The repair streams' payload types (RFC 4588), each with the video payload type it repairs
/// (those of [`rtp_codec`] and H.264 main), as webrtc-rs numbers them by default where it has them.
pub(crate) const RTX_PAYLOAD_TYPES: [(u8, u8); 5] =
    [(97, 96), (99, 98), (103, 102), (106, 41), (112, H264_MAIN_PAYLOAD_TYPE)];

/// The RTX codec repairing `primary`.
pub(crate) fn rtx_codec(payload_type: u8, primary: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "video/rtx".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("apt={primary}"),
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

/// The payload type the remote took for repairing `primary`, if it took RTX.
pub(crate) fn negotiated_rtx(codecs: &[RTCRtpCodecParameters], primary: u8) -> Option<u8> {
    codecs
        .iter()
        .filter(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case("video/rtx"))
        .find(|codec| {
            codec.rtp_codec.sdp_fmtp_line.split(';').any(|parameter| {
                parameter
                    .trim()
                    .strip_prefix("apt=")
                    .and_then(|apt| apt.trim().parse().ok())
                    == Some(primary)
            })
        })
        .map(|codec| codec.payload_type)
}
