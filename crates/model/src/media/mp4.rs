//! MP4 (ISO BMFF): only the boxes are parsed up front (`re_mp4` seeks past the media data); each
//! sample is then read by its offset, so a range-reading source fetches only what plays. H.264
//! samples are converted from AVCC to Annex-B, with SPS and PPS before every sync sample.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use bytes::Bytes;
use re_mp4::{Mp4, Sample, StsdBoxContent};

use super::h264::{self, START_CODE};
use super::mp4_tables::children;
use super::{Codec, Demuxer, Frame, MediaError, MediaResult, MediaSource, TrackInfo};

struct Mp4Track {
    samples: Vec<Sample>,
    next: usize,
    /// AVCC NAL length size and the SPS/PPS to put before keyframes (H.264 only).
    avc: Option<(usize, Vec<u8>)>,
    /// The first sample's decode time: timestamps start at 0…
    origin: i64,
    /// …plus the time the track's edit list holds it back (its leading empty edits).
    delay: Duration,
}

pub struct Mp4Demuxer {
    source: Box<dyn MediaSource>,
    tracks: Vec<TrackInfo>,
    state: Vec<Mp4Track>,
}

fn seconds(units: i64, timescale: u64) -> Duration {
    Duration::from_nanos((units.max(0) as u128 * 1_000_000_000 / timescale.max(1) as u128) as u64)
}

/// How long a track's edit list holds its media back: the sum of its leading empty edits (a
/// track that starts after the others, say video half a second after the audio), in movie time.
fn leading_empty_edits(trak: &re_mp4::TrakBox, movie_timescale: u32) -> Duration {
    let Some(elst) = trak.edts.as_ref().and_then(|edts| edts.elst.as_ref()) else {
        return Duration::ZERO;
    };
    // An empty edit's media time is -1: all ones in the box's 32 or 64 bits.
    let empty = if elst.version == 1 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let units: u64 = elst
        .entries
        .iter()
        .take_while(|entry| entry.media_time == empty)
        .map(|entry| entry.segment_duration)
        .sum();
    seconds(units.min(i64::MAX as u64) as i64, u64::from(movie_timescale))
}

/// Boxes whose payload is a sequence of boxes, and how many bytes come before that sequence.
fn children_offset(kind: &[u8; 4]) -> Option<u64> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"udta" | b"edts" | b"dinf" | b"mvex" | b"moof" | b"traf"
        | b"mfra" | b"ilst" => Some(0),
        // A full box: version and flags first.
        b"meta" => Some(4),
        // A full box and an entry count, then the sample entries.
        b"stsd" => Some(8),
        // A visual sample entry's fields, then its boxes (avcC among them).
        b"avc1" | b"avc3" => Some(78),
        _ => None,
    }
}

/// Checks that an `avcC` holds the parameter sets it announces: the MP4 reader takes the rest of
/// the box as the bytes after them, and a box too short for them makes that a size near 2^64.
fn check_avcc(source: &mut dyn MediaSource, body: u64, end: u64) -> MediaResult<()> {
    let overrun = || MediaError::Invalid("MP4: avcC's parameter sets overrun it".into());
    let mut bytes = vec![0u8; usize::try_from(end - body).map_err(|_| overrun())?];
    source.seek(SeekFrom::Start(body))?;
    source.read_exact(&mut bytes)?;
    let mut at = 6;
    let byte = |at: usize| bytes.get(at).copied().ok_or_else(overrun);
    let mut sets = usize::from(byte(5)? & 0x1F);
    for list in 0..2 {
        if list == 1 {
            sets = usize::from(byte(at)?);
            at += 1;
        }
        for _ in 0..sets {
            let length = usize::from(u16::from_be_bytes([byte(at)?, byte(at + 1)?]));
            at += 2 + length;
            if at > bytes.len() {
                return Err(overrun());
            }
        }
    }
    Ok(())
}

/// Containers nested deeper than this are refused (a file of a few bytes per level could
/// otherwise recurse without end).
const MAX_BOX_DEPTH: u32 = 24;

/// Checks that every box, at every level the demuxer reads, fits inside its parent and the file:
/// the MP4 reader allocates by the sizes boxes claim, so a claim larger than the bytes that exist
/// is refused before it reads.
fn check_box_sizes(source: &mut dyn MediaSource, start: u64, end: u64, depth: u32) -> MediaResult<()> {
    if depth > MAX_BOX_DEPTH {
        return Err(MediaError::Invalid(format!(
            "MP4: boxes nested deeper than {MAX_BOX_DEPTH}"
        )));
    }
    for span in children(source, start, end)? {
        if &span.kind == b"avcC" {
            check_avcc(source, span.body, span.end)?;
        }
        if let Some(offset) = children_offset(&span.kind)
            && span.body + offset <= span.end
        {
            let nested = check_box_sizes(source, span.body + offset, span.end, depth + 1);
            // QuickTime writes `meta` without the version and flags of ISO's full box.
            if nested.is_err() && &span.kind == b"meta" {
                check_box_sizes(source, span.body, span.end, depth + 1)?;
            } else {
                nested?;
            }
        }
    }
    Ok(())
}

impl Mp4Demuxer {
    pub fn open(mut source: Box<dyn MediaSource>, size: u64) -> MediaResult<Self> {
        check_box_sizes(&mut source, 0, size, 0)?;
        super::mp4_tables::check_sample_tables(&mut source, size)?;
        source.seek(SeekFrom::Start(0))?;
        // The reader indexes its sample tables by what the file claims and panics when they
        // disagree. The check above walks them as the reader does; should a contradiction it
        // does not know of get through, the panic still refuses that file and only that file.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Mp4::read(&mut source, size)));
        let mp4 = match read {
            Ok(read) => read.map_err(|e| MediaError::Invalid(format!("MP4: {e}")))?,
            Err(_) => {
                return Err(MediaError::Invalid(
                    "MP4: its sample tables contradict each other (the reader gave up)".into(),
                ));
            }
        };
        let mut tracks = Vec::new();
        let mut state = Vec::new();
        for track in mp4.tracks().values() {
            // The handler says what a track is (the sample entry may be one re_mp4 does not know).
            let trak = track.trak(&mp4);
            if !matches!(&trak.mdia.hdlr.handler_type.value, b"vide" | b"soun") {
                continue;
            }
            let stsd = &trak.mdia.minf.stbl.stsd.contents;
            let mut h264_profile = None;
            let (codec, avc) = match stsd {
                StsdBoxContent::Avc1(avc1) => {
                    let config = &avc1.avcc.contents;
                    h264::check_profile(config.avc_profile_indication)?;
                    h264_profile = Some(config.avc_profile_indication);
                    let mut parameter_sets = Vec::new();
                    for nal in config
                        .sequence_parameter_sets
                        .iter()
                        .chain(&config.picture_parameter_sets)
                    {
                        parameter_sets.extend_from_slice(&START_CODE);
                        parameter_sets.extend_from_slice(&nal.bytes);
                    }
                    (
                        Codec::H264,
                        Some((config.length_size_minus_one as usize + 1, parameter_sets)),
                    )
                }
                StsdBoxContent::Vp08(_) => (Codec::Vp8, None),
                StsdBoxContent::Vp09(_) => (Codec::Vp9, None),
                StsdBoxContent::Av01(_) => (Codec::Av1, None),
                StsdBoxContent::Hvc1(_) | StsdBoxContent::Hev1(_) => {
                    return Err(MediaError::Unsupported(
                        "H.265/HEVC video (WebRTC players decode H.264, VP8, VP9, AV1)".into(),
                    ));
                }
                StsdBoxContent::Mp4a(_) => {
                    return Err(MediaError::Unsupported(
                        "AAC audio (WebRTC carries Opus; re-encode the audio to Opus)".into(),
                    ));
                }
                StsdBoxContent::Unknown(fourcc) if &fourcc.value == b"Opus" => (Codec::Opus, None),
                StsdBoxContent::Unknown(fourcc) => {
                    return Err(MediaError::Unsupported(format!(
                        "MP4 codec {:?}",
                        String::from_utf8_lossy(&fourcc.value)
                    )));
                }
                StsdBoxContent::Tx3g(_) => continue,
            };
            if codec == Codec::H264 {
                // Without B-frames, presentation follows decoding at a constant offset.
                let offsets = track
                    .samples
                    .iter()
                    .map(|s| s.composition_timestamp - s.decode_timestamp);
                let first = track
                    .samples
                    .first()
                    .map_or(0, |s| s.composition_timestamp - s.decode_timestamp);
                if offsets.clone().any(|o| o != first) {
                    return Err(MediaError::Unsupported(
                        "H.264 with B-frames (frames out of order; encode with -bf 0)".into(),
                    ));
                }
            }
            state.push(Mp4Track {
                origin: track.samples.first().map_or(0, |s| s.decode_timestamp),
                delay: leading_empty_edits(trak, mp4.moov.mvhd.timescale),
                samples: track.samples.clone(),
                next: 0,
                avc,
            });
            tracks.push(TrackInfo {
                index: tracks.len(),
                codec,
                width: track.width as u32,
                height: track.height as u32,
                h264_profile,
            });
        }
        if tracks.is_empty() {
            return Err(MediaError::Invalid("MP4 without audio or video tracks".into()));
        }
        Ok(Self { source, tracks, state })
    }
}

impl Demuxer for Mp4Demuxer {
    fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    fn next_frame(&mut self) -> MediaResult<Option<Frame>> {
        // The track whose next sample decodes first.
        let next = self
            .state
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                t.samples
                    .get(t.next)
                    .map(|s| (i, t.delay + seconds(s.decode_timestamp - t.origin, s.timescale)))
            })
            .min_by_key(|(_, at)| *at);
        let Some((index, timestamp)) = next else {
            return Ok(None);
        };
        let track = &mut self.state[index];
        let sample = track.samples[track.next];
        track.next += 1;
        if sample.size > 64 << 20 {
            return Err(MediaError::Invalid(format!("MP4 sample of {} bytes", sample.size)));
        }
        let mut raw = vec![0u8; sample.size as usize];
        self.source.seek(SeekFrom::Start(sample.offset))?;
        self.source
            .read_exact(&mut raw)
            .map_err(|_| MediaError::Invalid("MP4 sample lies past the end of the file".into()))?;
        let data = match &track.avc {
            Some((length_size, parameter_sets)) => {
                let mut annexb = Vec::with_capacity(raw.len() + parameter_sets.len() + 16);
                if sample.is_sync {
                    annexb.extend_from_slice(parameter_sets);
                }
                h264::avcc_to_annexb(&raw, *length_size, &mut annexb)?;
                annexb
            }
            None => raw,
        };
        Ok(Some(Frame {
            track: index,
            timestamp,
            duration: seconds(sample.duration as i64, sample.timescale),
            keyframe: sample.is_sync,
            data: Bytes::from(data),
            packets: Default::default(),
        }))
    }
}
