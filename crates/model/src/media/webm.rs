//! WebM (Matroska): VP8, VP9, AV1 video and Opus audio blocks, in file order (already interleaved
//! by time), with the keyframe flag of simple blocks.

use std::time::Duration;

use bytes::Bytes;
use matroska_demuxer::{Frame as MkvFrame, MatroskaFile, TrackType};

use super::ogg::opus_packet_duration;
use super::{Codec, Demuxer, Frame, MediaError, MediaResult, MediaSource, TrackInfo};

pub struct WebmDemuxer {
    file: MatroskaFile<Box<dyn MediaSource>>,
    tracks: Vec<TrackInfo>,
    /// Matroska track number → our track index.
    numbers: Vec<(u64, usize)>,
    /// Nanoseconds per timestamp unit.
    scale: u64,
    /// Each track's DefaultDuration: the length of frames whose block gives none (SimpleBlocks).
    default_durations: Vec<Duration>,
    frame: MkvFrame,
}

/// The CRC-32 element's id.
const CRC32_ID: u64 = 0xBF;
const SEGMENT_ID: u64 = 0x1853_8067;

/// An EBML variable-length integer: its value (with the length marker kept for ids, dropped for
/// sizes) and its length in bytes. Before an id, bytes below 0x10 are skipped, as the Matroska
/// reader skips them (so the id read here is the one it will read).
fn read_vint(source: &mut dyn MediaSource, keep_marker: bool) -> MediaResult<u64> {
    let mut first = [0u8; 1];
    source.read_exact(&mut first)?;
    while keep_marker && first[0] & 0xF0 == 0 {
        source.read_exact(&mut first)?;
    }
    let length = first[0].leading_zeros() as usize + 1;
    if length > 8 {
        return Err(MediaError::Invalid("WebM: an EBML number longer than 8 bytes".into()));
    }
    let mut value = if keep_marker {
        u64::from(first[0])
    } else {
        u64::from(first[0]) & (0xFF >> length)
    };
    let mut rest = [0u8; 7];
    source.read_exact(&mut rest[..length - 1])?;
    for byte in &rest[..length - 1] {
        value = value << 8 | u64::from(*byte);
    }
    Ok(value)
}

/// Refuses what the Matroska reader cannot get past: a CRC-32 element first in the Segment (it
/// reads that element's header again and again).
fn check_segment_start(source: &mut dyn MediaSource) -> MediaResult<()> {
    let _ebml = read_vint(source, true)?;
    let header_size = read_vint(source, false)?;
    source.seek(std::io::SeekFrom::Current(
        i64::try_from(header_size).unwrap_or(i64::MAX),
    ))?;
    if read_vint(source, true)? != SEGMENT_ID {
        return Ok(()); // the reader names what is wrong
    }
    let _segment_size = read_vint(source, false)?;
    if read_vint(source, true)? == CRC32_ID {
        return Err(MediaError::Invalid(
            "WebM: a CRC-32 element first in the Segment is not supported".into(),
        ));
    }
    Ok(())
}

impl WebmDemuxer {
    pub fn open(mut source: Box<dyn MediaSource>) -> MediaResult<Self> {
        // A file too short for these reads is the reader's to refuse.
        if let Err(MediaError::Invalid(problem)) = check_segment_start(&mut source)
            && problem.contains("CRC-32")
        {
            return Err(MediaError::Invalid(problem));
        }
        source.seek(std::io::SeekFrom::Start(0))?;
        let file = MatroskaFile::open(source).map_err(|e| MediaError::Invalid(format!("WebM: {e}")))?;
        let mut tracks = Vec::new();
        let mut numbers = Vec::new();
        let mut default_durations = Vec::new();
        for entry in file.tracks() {
            if !matches!(entry.track_type(), TrackType::Video | TrackType::Audio) {
                continue;
            }
            let codec = match entry.codec_id() {
                "V_VP8" => Codec::Vp8,
                "V_VP9" => Codec::Vp9,
                "V_AV1" => Codec::Av1,
                "A_OPUS" => Codec::Opus,
                "A_VORBIS" => return Err(MediaError::Unsupported("Vorbis audio (WebRTC carries Opus)".into())),
                "A_AAC" => return Err(MediaError::Unsupported("AAC audio (WebRTC carries Opus)".into())),
                other => return Err(MediaError::Unsupported(format!("WebM codec {other}"))),
            };
            let (width, height) = entry.video().map_or((0, 0), |v| {
                (v.pixel_width().get() as u32, v.pixel_height().get() as u32)
            });
            numbers.push((entry.track_number().get(), tracks.len()));
            default_durations.push(
                entry
                    .default_duration()
                    .map_or(Duration::ZERO, |d| Duration::from_nanos(d.get())),
            );
            tracks.push(TrackInfo {
                index: tracks.len(),
                codec,
                width,
                height,
                h264_profile: None,
            });
        }
        if tracks.is_empty() {
            return Err(MediaError::Invalid("WebM without audio or video".into()));
        }
        let scale = file.info().timestamp_scale().get();
        Ok(Self {
            file,
            tracks,
            numbers,
            scale,
            default_durations,
            frame: MkvFrame::default(),
        })
    }
}

impl Demuxer for WebmDemuxer {
    fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    fn next_frame(&mut self) -> MediaResult<Option<Frame>> {
        loop {
            let more = self
                .file
                .next_frame(&mut self.frame)
                .map_err(|e| MediaError::Invalid(format!("WebM: {e}")))?;
            if !more {
                return Ok(None);
            }
            let Some(&(_, track)) = self.numbers.iter().find(|(n, _)| *n == self.frame.track) else {
                continue;
            };
            let codec = self.tracks[track].codec;
            let data = Bytes::from(std::mem::take(&mut self.frame.data));
            let keyframe = match self.frame.is_keyframe {
                Some(flag) => flag,
                None => codec == Codec::Opus || super::ivf::keyframe_of(codec, &data),
            };
            let duration = match codec {
                Codec::Opus => opus_packet_duration(&data)?,
                _ => match self.frame.duration {
                    Some(units) => Duration::from_nanos(units.saturating_mul(self.scale)),
                    None => self.default_durations[track],
                },
            };
            return Ok(Some(Frame {
                track,
                timestamp: Duration::from_nanos(self.frame.timestamp.saturating_mul(self.scale)),
                duration,
                keyframe: keyframe || codec == Codec::Opus,
                data,
                packets: Default::default(),
            }));
        }
    }
}
