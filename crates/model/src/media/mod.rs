//! Stored media as encoded frames: demuxers for MP4 (H.264), WebM (VP8, VP9, AV1, Opus), IVF (VP8,
//! VP9, AV1), Ogg (Opus) and raw Annex-B H.264, each yielding [`Frame`]s with timestamps and
//! keyframe flags, in the order they are to be sent. H.264 always comes out as Annex-B with its SPS
//! and PPS before every keyframe, as WebRTC needs. What WebRTC playback cannot carry (AAC, H.264
//! High or with B-frames, HEVC…) is refused by name when the file is opened.

mod annexb;
mod h264;
mod ivf;
mod mp4;
mod mp4_tables;
mod ogg;
pub mod playback;
pub mod source;
mod webm;

use std::io::{Read, Seek};
use std::time::Duration;

use bytes::Bytes;

/// A codec WebRTC playback can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Vp8,
    Vp9,
    Av1,
    Opus,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::Vp8 => "VP8",
            Self::Vp9 => "VP9",
            Self::Av1 => "AV1",
            Self::Opus => "Opus",
        }
    }

    pub fn is_video(self) -> bool {
        self != Self::Opus
    }

    /// The RTP clock rate of the codec.
    pub fn clock_rate(self) -> u32 {
        if self == Self::Opus { 48_000 } else { 90_000 }
    }
}

/// One elementary stream of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInfo {
    /// Index of the track in [`Demuxer::tracks`]; frames name their track by it.
    pub index: usize,
    pub codec: Codec,
    /// Pixels, for video.
    pub width: u32,
    pub height: u32,
    /// The H.264 profile (`profile_idc`: 66 baseline, 77 main), announced in the SDP.
    pub h264_profile: Option<u8>,
}

/// One encoded frame (a video access unit or an audio packet).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub track: usize,
    /// Presentation time from the start of the file.
    pub timestamp: Duration,
    pub duration: Duration,
    /// A frame a decoder can start from (always true for audio).
    pub keyframe: bool,
    pub data: Bytes,
    /// The frame cut into packet payloads, by whichever of its senders comes first, for all.
    pub packets: Packets,
}

/// A frame's packet payloads, computed once (see [`Frame::packets`]). Not part of a frame's value:
/// two frames are equal whether or not either was cut yet.
#[derive(Clone, Debug, Default)]
pub struct Packets(std::sync::OnceLock<std::sync::Arc<[Bytes]>>);

impl Packets {
    /// The payloads, cut by `cut` on the first call.
    pub fn get_or_cut(&self, cut: impl FnOnce() -> Vec<Bytes>) -> &std::sync::Arc<[Bytes]> {
        self.0.get_or_init(|| cut().into())
    }
}

impl PartialEq for Packets {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Media refused or broken, with what the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Valid media that WebRTC playback cannot carry, named.
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// Bytes that are not the media they claim to be.
    #[error("invalid media: {0}")]
    Invalid(String),
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        Self::Invalid(format!("read failed: {e}"))
    }
}

pub type MediaResult<T> = Result<T, MediaError>;

/// Frames of a file, in sending order (timestamps interleaved across tracks).
pub trait Demuxer: Send {
    fn tracks(&self) -> &[TrackInfo];
    fn next_frame(&mut self) -> MediaResult<Option<Frame>>;
}

/// A seekable byte source the demuxers read from: a file, or the store read by ranges.
pub trait MediaSource: Read + Seek + Send {}
impl<T: Read + Seek + Send> MediaSource for T {}

/// The container, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Mp4,
    WebM,
    Ivf,
    Ogg,
    AnnexB,
}

impl Container {
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match head {
            [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some(Self::Mp4),
            [0x1a, 0x45, 0xdf, 0xa3, ..] => Some(Self::WebM),
            [b'D', b'K', b'I', b'F', ..] => Some(Self::Ivf),
            [b'O', b'g', b'g', b'S', ..] => Some(Self::Ogg),
            [0, 0, 0, 1, ..] | [0, 0, 1, ..] => Some(Self::AnnexB),
            _ => None,
        }
    }
}

/// Opens `source` (of `size` bytes) with the demuxer its first bytes call for.
pub fn open(mut source: Box<dyn MediaSource>, size: u64) -> MediaResult<Box<dyn Demuxer>> {
    let mut head = [0u8; 12];
    let read = read_up_to(&mut source, &mut head)?;
    source.seek(std::io::SeekFrom::Start(0))?;
    let container = Container::sniff(&head[..read]).ok_or_else(|| {
        MediaError::Unsupported("not MP4, WebM, IVF, Ogg or Annex-B H.264 (unrecognised first bytes)".into())
    })?;
    Ok(match container {
        Container::Mp4 => Box::new(mp4::Mp4Demuxer::open(source, size)?),
        Container::WebM => Box::new(webm::WebmDemuxer::open(source)?),
        Container::Ivf => Box::new(ivf::IvfDemuxer::open(source)?),
        Container::Ogg => Box::new(ogg::OggDemuxer::open(source)?),
        Container::AnnexB => Box::new(annexb::AnnexBDemuxer::open(source)?),
    })
}

fn read_up_to(source: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
