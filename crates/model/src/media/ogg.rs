//! Ogg carrying Opus: the OpusHead and OpusTags packets, then one Opus packet per frame, its
//! duration read from its TOC byte (RFC 6716 §3.1).

use std::time::Duration;

use bytes::Bytes;
use ogg::PacketReader;

use super::{Codec, Demuxer, Frame, MediaError, MediaResult, MediaSource, TrackInfo};

pub struct OggDemuxer {
    packets: PacketReader<Box<dyn MediaSource>>,
    tracks: Vec<TrackInfo>,
    elapsed: Duration,
}

/// Duration of an Opus packet from its TOC byte (and the frame count byte of code 3 packets).
pub fn opus_packet_duration(packet: &[u8]) -> MediaResult<Duration> {
    let toc = *packet
        .first()
        .ok_or_else(|| MediaError::Invalid("empty Opus packet".into()))?;
    let config = toc >> 3;
    let frame_us: u64 = match config {
        0..=11 => [10_000, 20_000, 40_000, 60_000][(config % 4) as usize],
        12..=15 => [10_000, 20_000][(config % 2) as usize],
        _ => [2_500, 5_000, 10_000, 20_000][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => {
            let count = packet
                .get(1)
                .ok_or_else(|| MediaError::Invalid("Opus code 3 packet without a frame count".into()))?;
            (count & 0x3f) as u64
        }
    };
    Ok(Duration::from_micros(frame_us * frames))
}

fn ogg_error(e: ogg::OggReadError) -> MediaError {
    MediaError::Invalid(format!("Ogg: {e}"))
}

impl OggDemuxer {
    pub fn open(source: Box<dyn MediaSource>) -> MediaResult<Self> {
        let mut packets = PacketReader::new(source);
        let head = packets
            .read_packet()
            .map_err(ogg_error)?
            .ok_or_else(|| MediaError::Invalid("empty Ogg stream".into()))?;
        if !head.data.starts_with(b"OpusHead") {
            let codec = if head.data.get(1..7) == Some(b"vorbis") {
                "Vorbis"
            } else {
                "not Opus"
            };
            return Err(MediaError::Unsupported(format!("Ogg audio codec {codec} (Opus only)")));
        }
        let tags = packets.read_packet().map_err(ogg_error)?;
        if !tags.is_some_and(|p| p.data.starts_with(b"OpusTags")) {
            return Err(MediaError::Invalid("Ogg Opus stream without OpusTags".into()));
        }
        Ok(Self {
            packets,
            tracks: vec![TrackInfo {
                index: 0,
                codec: Codec::Opus,
                width: 0,
                height: 0,
                h264_profile: None,
            }],
            elapsed: Duration::ZERO,
        })
    }
}

impl Demuxer for OggDemuxer {
    fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    fn next_frame(&mut self) -> MediaResult<Option<Frame>> {
        let Some(packet) = self.packets.read_packet().map_err(ogg_error)? else {
            return Ok(None);
        };
        let duration = opus_packet_duration(&packet.data)?;
        let timestamp = self.elapsed;
        self.elapsed += duration;
        Ok(Some(Frame {
            track: 0,
            timestamp,
            duration,
            keyframe: true,
            data: Bytes::from(packet.data),
            packets: Default::default(),
        }))
    }
}
