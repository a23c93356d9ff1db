//! Raw H.264 (Annex-B): NAL units split on start codes and grouped into access units. A raw stream
//! carries no timestamps: frames are paced at 30 per second.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::h264::{self, NAL_IDR, NAL_PPS, NAL_SPS, START_CODE};
use super::{Codec, Demuxer, Frame, MediaError, MediaResult, MediaSource, TrackInfo};

const FRAME: Duration = Duration::from_nanos(1_000_000_000 / 30);
const READ: usize = 64 * 1024;
/// An access unit larger than this is not a video frame.
const MAX_ACCESS_UNIT: usize = 32 << 20;
/// NAL units looked at when the stream is opened, for B-frames (an encoder that uses them does so
/// within its first pictures).
const LOOKAHEAD_NALS: usize = 64;

fn b_frames_refused() -> MediaError {
    MediaError::Unsupported("H.264 with B-frames (frames out of order; encode with -bf 0)".into())
}

pub struct AnnexBDemuxer {
    source: Box<dyn MediaSource>,
    tracks: Vec<TrackInfo>,
    buffer: Vec<u8>,
    eof: bool,
    frames: u64,
    /// NAL units read ahead of the access unit being built.
    carried: VecDeque<Vec<u8>>,
    /// The latest SPS and PPS, repeated before keyframes that lack them.
    parameter_sets: [Option<Vec<u8>>; 2],
}

impl AnnexBDemuxer {
    pub fn open(source: Box<dyn MediaSource>) -> MediaResult<Self> {
        let mut demuxer = Self {
            source,
            tracks: vec![TrackInfo {
                index: 0,
                codec: Codec::H264,
                width: 0,
                height: 0,
                h264_profile: None,
            }],
            buffer: Vec::new(),
            eof: false,
            frames: 0,
            carried: VecDeque::new(),
            parameter_sets: [None, None],
        };
        // The first SPS says the profile: refuse what cannot be played before any frame goes out.
        let first = demuxer
            .next_nal()?
            .ok_or_else(|| MediaError::Invalid("empty H.264 stream".into()))?;
        let sps = if h264::nal_type(&first) == NAL_SPS {
            Some(first.clone())
        } else {
            None
        };
        match sps {
            Some(sps) if sps.len() > 1 => {
                h264::check_profile(sps[1])?;
                demuxer.tracks[0].h264_profile = Some(sps[1]);
            }
            _ => return Err(MediaError::Invalid("H.264 stream does not start with an SPS".into())),
        }
        demuxer.carried.push_back(first);
        // B-frames cannot be sent as they come: refuse them before any frame goes out.
        while demuxer.carried.len() < LOOKAHEAD_NALS {
            let Some(nal) = demuxer.next_nal()? else { break };
            if h264::is_b_slice(&nal) {
                return Err(b_frames_refused());
            }
            demuxer.carried.push_back(nal);
        }
        Ok(demuxer)
    }

    /// The next NAL unit (without start code), reading more as needed.
    fn next_nal(&mut self) -> MediaResult<Option<Vec<u8>>> {
        loop {
            let units = h264::nal_units(&self.buffer);
            // The last unit may continue past the buffer until the stream has ended.
            if units.len() >= 2 || (self.eof && !units.is_empty()) {
                let unit = units[0].to_vec();
                let consumed = if units.len() >= 2 {
                    // Up to the start code of the second unit.
                    let second = units[1].as_ptr() as usize - self.buffer.as_ptr() as usize;
                    second - 3
                } else {
                    self.buffer.len()
                };
                self.buffer.drain(..consumed);
                return Ok(Some(unit));
            }
            if self.eof {
                return Ok(None);
            }
            if self.buffer.len() > MAX_ACCESS_UNIT {
                return Err(MediaError::Invalid("H.264 NAL unit larger than 32 MiB".into()));
            }
            let start = self.buffer.len();
            self.buffer.resize(start + READ, 0);
            let read = self.source.read(&mut self.buffer[start..])?;
            self.buffer.truncate(start + read);
            self.eof = read == 0;
        }
    }
}

/// Whether a NAL unit starts a new access unit after `seen_slice`.
fn starts_access_unit(nal: &[u8], seen_slice: bool) -> bool {
    let kind = h264::nal_type(nal);
    match kind {
        9 => true,                                                        // access unit delimiter
        6..=8 | 14..=18 => seen_slice, // SEI, SPS, PPS, prefixes before a new picture
        1 | 5 => seen_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0), // first_mb_in_slice == 0
        _ => false,
    }
}

impl Demuxer for AnnexBDemuxer {
    fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    fn next_frame(&mut self) -> MediaResult<Option<Frame>> {
        let mut unit = Vec::new();
        let (mut seen_slice, mut keyframe, mut has_parameter_sets) = (false, false, false);
        loop {
            let nal = match self.carried.pop_front() {
                Some(nal) => nal,
                None => match self.next_nal()? {
                    Some(nal) => nal,
                    None => break,
                },
            };
            if starts_access_unit(&nal, seen_slice) {
                self.carried.push_front(nal);
                break;
            }
            if h264::is_b_slice(&nal) {
                return Err(b_frames_refused());
            }
            let kind = h264::nal_type(&nal);
            if kind == NAL_SPS || kind == NAL_PPS {
                self.parameter_sets[(kind - NAL_SPS) as usize] = Some(nal.clone());
            }
            has_parameter_sets |= kind == NAL_SPS;
            seen_slice |= kind == 1 || kind == NAL_IDR;
            keyframe |= kind == NAL_IDR;
            unit.extend_from_slice(&START_CODE);
            unit.extend_from_slice(&nal);
            if unit.len() > MAX_ACCESS_UNIT {
                return Err(MediaError::Invalid("H.264 access unit larger than 32 MiB".into()));
            }
        }
        if !seen_slice {
            return Ok(None);
        }
        if keyframe && !has_parameter_sets {
            let mut prefixed = Vec::with_capacity(unit.len() + 64);
            for set in self.parameter_sets.iter().flatten() {
                prefixed.extend_from_slice(&START_CODE);
                prefixed.extend_from_slice(set);
            }
            prefixed.extend_from_slice(&unit);
            unit = prefixed;
        }
        let timestamp = FRAME * self.frames as u32;
        self.frames += 1;
        Ok(Some(Frame {
            track: 0,
            timestamp,
            duration: FRAME,
            keyframe,
            data: Bytes::from(unit),
            packets: Default::default(),
        }))
    }
}
