//! The sample tables of an MP4's tracks, checked against each other before the MP4 reader walks
//! them. The reader indexes one table by what another claims (a chunk's offset by the chunk count
//! `stsc` implies, a sample's duration by `stts`' run count, a sample's size by `stsz`) and panics
//! or allocates without bound when they disagree; here the same walk is made over the counts alone,
//! and a file whose tables contradict each other is refused by name.

use std::io::SeekFrom;

use super::{MediaError, MediaResult, MediaSource};

/// Samples a file's tracks may hold together: a day of 120 fps video is 10.4 million. The reader
/// keeps about 50 bytes per sample, so this bounds its tables at under a gigabyte whatever a file
/// claims.
pub const MAX_SAMPLES: u64 = 16_000_000;

fn invalid(message: impl Into<String>) -> MediaError {
    MediaError::Invalid(format!("MP4: {}", message.into()))
}

/// A box's type and where its body lies.
pub(super) struct BoxSpan {
    pub kind: [u8; 4],
    pub body: u64,
    pub end: u64,
}

/// The boxes from `start` to `end`, each checked to fit there: the MP4 reader allocates by the
/// sizes boxes claim, and does not support size 0 ("to the end of the file": it would read the
/// same header again and again).
pub(super) fn children(source: &mut dyn MediaSource, start: u64, end: u64) -> MediaResult<Vec<BoxSpan>> {
    let mut spans = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        source.seek(SeekFrom::Start(at))?;
        let mut header = [0u8; 16];
        source.read_exact(&mut header[..8])?;
        let kind: [u8; 4] = header[4..8].try_into().expect("four bytes");
        let (size, header_size) = match u32::from_be_bytes(header[..4].try_into().expect("four bytes")) {
            0 => {
                return Err(invalid(format!(
                    "box {:?} of size 0 (to the end of the file) is not supported",
                    name(&kind)
                )));
            }
            1 if at + 16 <= end => {
                source.read_exact(&mut header[8..16])?;
                (u64::from_be_bytes(header[8..16].try_into().expect("eight bytes")), 16)
            }
            1 => return Err(invalid("a 64-bit box size past the end")),
            size => (u64::from(size), 8),
        };
        if size < header_size || size > end - at {
            return Err(invalid(format!(
                "box {:?} claims {size} bytes where {} remain",
                name(&kind),
                end - at
            )));
        }
        spans.push(BoxSpan {
            kind,
            body: at + header_size,
            end: at + size,
        });
        at += size;
    }
    Ok(spans)
}

/// The box of this type the reader keeps: of several, the last (each one it meets replaces the
/// one before).
fn child<'a>(spans: &'a [BoxSpan], kind: &[u8; 4]) -> Option<&'a BoxSpan> {
    spans.iter().rev().find(|span| &span.kind == kind)
}

fn read_u32s(source: &mut dyn MediaSource, at: u64, count: usize) -> MediaResult<Vec<u32>> {
    source.seek(SeekFrom::Start(at))?;
    let mut bytes = vec![0u8; count * 4];
    source.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|word| u32::from_be_bytes(word.try_into().expect("four bytes")))
        .collect())
}

/// A full box's table: its entry count, checked to fit the box, and its entries of `words` u32s
/// each (read only when `read` is set).
fn table(
    source: &mut dyn MediaSource,
    span: &BoxSpan,
    before_count: u64,
    words: u64,
    read: bool,
) -> MediaResult<(u64, Vec<u32>)> {
    let count_at = span.body + 4 + before_count;
    if count_at + 4 > span.end {
        return Err(invalid(format!("{} is too short", name(&span.kind))));
    }
    let count = u64::from(read_u32s(source, count_at, 1)?[0]);
    if count * words * 4 > span.end - count_at - 4 {
        return Err(invalid(format!(
            "{} claims {count} entries, more than it holds",
            name(&span.kind)
        )));
    }
    let entries = if read {
        read_u32s(source, count_at + 4, (count * words) as usize)?
    } else {
        Vec::new()
    };
    Ok((count, entries))
}

fn name(kind: &[u8; 4]) -> String {
    String::from_utf8_lossy(kind).into_owned()
}

/// Checks the sample tables of every track of the file (`moov`/`trak`/.../`stbl`).
pub fn check_sample_tables(source: &mut dyn MediaSource, size: u64) -> MediaResult<()> {
    let top = children(source, 0, size)?;
    let Some(moov) = child(&top, b"moov") else {
        return Ok(()); // the reader names a file without a movie
    };
    let mut samples = 0u64;
    for trak in children(source, moov.body, moov.end)?
        .iter()
        .filter(|span| &span.kind == b"trak")
    {
        let (mut stbl, mut duration) = (None, None);
        let mut level = children(source, trak.body, trak.end)?;
        for kind in [b"mdia", b"minf", b"stbl"] {
            let Some(span) = child(&level, kind) else { break };
            let (body, end) = (span.body, span.end);
            if kind == b"stbl" {
                stbl = Some((body, end));
            }
            level = children(source, body, end)?;
            if kind == b"mdia"
                && let Some(mdhd) = child(&level, b"mdhd")
            {
                let (at, end) = (mdhd.body, mdhd.end);
                duration = Some(media_duration(source, at, end)?);
            }
        }
        if let (Some((body, end)), Some(duration)) = (stbl, duration) {
            let tables = children(source, body, end)?;
            samples += check_track(source, &tables, size, duration)?;
            if samples > MAX_SAMPLES {
                return Err(invalid(format!("more than {MAX_SAMPLES} samples in all tracks")));
            }
        }
    }
    Ok(())
}

/// The duration `mdhd` gives the track, in its timescale.
fn media_duration(source: &mut dyn MediaSource, body: u64, end: u64) -> MediaResult<u64> {
    if body + 4 > end {
        return Err(invalid("mdhd is too short"));
    }
    let version = read_u32s(source, body, 1)?[0] >> 24;
    // Version 1: 64-bit creation and modification times and duration; version 0: 32-bit.
    let (at, words) = if version == 1 {
        (body + 4 + 8 + 8 + 4, 2)
    } else {
        (body + 4 + 4 + 4 + 4, 1)
    };
    if at + words as u64 * 4 > end {
        return Err(invalid("mdhd is too short"));
    }
    let duration = read_u32s(source, at, words)?;
    Ok(duration
        .iter()
        .fold(0u64, |value, word| (value << 32) | u64::from(*word)))
}

/// Checks one track's tables; returns its sample count.
fn check_track(source: &mut dyn MediaSource, stbl: &[BoxSpan], file_size: u64, duration: u64) -> MediaResult<u64> {
    // The reader needs these three and names a track that lacks one.
    let (Some(stsz), Some(stsc), Some(stts)) = (child(stbl, b"stsz"), child(stbl, b"stsc"), child(stbl, b"stts"))
    else {
        return Ok(0);
    };
    if stsz.body + 12 > stsz.end {
        return Err(invalid("stsz is too short"));
    }
    let head = read_u32s(source, stsz.body + 4, 2)?;
    let (sample_size, samples) = (u64::from(head[0]), u64::from(head[1]));
    if sample_size == 0 && samples * 4 > stsz.end - stsz.body - 12 {
        return Err(invalid(format!("stsz claims {samples} sizes, more than it holds")));
    }
    if samples > MAX_SAMPLES {
        return Err(invalid(format!("a track of {samples} samples (at most {MAX_SAMPLES})")));
    }
    if samples.saturating_mul(sample_size) > file_size {
        return Err(invalid(format!(
            "{samples} samples of {sample_size} bytes do not fit in {file_size} bytes"
        )));
    }
    if samples == 0 {
        return Ok(0);
    }
    let (_, runs) = table(source, stsc, 0, 3, true)?;
    let chunks = match (child(stbl, b"stco"), child(stbl, b"co64")) {
        (Some(stco), _) => table(source, stco, 0, 1, false)?.0,
        (None, Some(co64)) => table(source, co64, 0, 2, false)?.0,
        (None, None) => return Err(invalid("a track with samples and no chunk offsets")),
    };
    let (_, durations) = table(source, stts, 0, 2, true)?;
    let offsets = match child(stbl, b"ctts") {
        Some(ctts) => Some(table(source, ctts, 0, 2, true)?.1),
        None => None,
    };
    if let Some(stss) = child(stbl, b"stss") {
        let (_, sync) = table(source, stss, 0, 1, true)?;
        if sync.contains(&0) {
            return Err(invalid("stss names sample 0 (samples count from 1)"));
        }
    }
    let last_decode_time = walk(samples, &runs, chunks, &durations, offsets.as_deref())?;
    if last_decode_time > duration {
        return Err(invalid(format!(
            "the last sample starts at {last_decode_time}, past the track's duration ({duration})"
        )));
    }
    Ok(samples)
}

/// The reader's walk over `samples`, on counts only: every chunk a sample lands in has an offset,
/// every sample a duration run (and a composition offset run, with `ctts`). Returns the decode
/// time of the last sample as the reader computes it (the reader takes the track's duration less
/// that time as the last sample's duration).
fn walk(samples: u64, runs: &[u32], chunks: u64, durations: &[u32], offsets: Option<&[u32]>) -> MediaResult<u64> {
    let first_chunk = |run: usize| u64::from(runs[run * 3]);
    let per_chunk = |run: usize| u64::from(runs[run * 3 + 1]);
    let run_count = runs.len() / 3;
    if run_count == 0 {
        return Err(invalid("stsc has no entries for a track with samples"));
    }
    let end_of_run = |run: usize| -> MediaResult<u64> {
        if run + 1 < run_count {
            first_chunk(run + 1)
                .checked_sub(1)
                .ok_or_else(|| invalid("stsc names chunk 0 (chunks count from 1)"))
        } else {
            Ok(u64::MAX)
        }
    };
    let (mut chunk, mut run) = (1u64, 0usize);
    let mut last_sample_in_chunk = per_chunk(0);
    let mut last_chunk_in_run = end_of_run(0)?;
    let (mut duration_run, mut last_in_duration_run) = (-1i64, -1i64);
    let (mut offset_run, mut last_in_offset_run) = (-1i64, -1i64);
    let mut decode_time = 0u64;
    for sample in 0..samples {
        if sample > 0 && sample >= last_sample_in_chunk {
            chunk += 1;
            if chunk > last_chunk_in_run {
                run += 1;
                if run >= run_count {
                    return Err(invalid("stsc runs out before the samples do"));
                }
                last_chunk_in_run = end_of_run(run)?;
            }
            last_sample_in_chunk += per_chunk(run);
        }
        if chunk > chunks {
            return Err(invalid(format!(
                "sample {} lies in chunk {chunk}, which has no offset ({chunks} chunks)",
                sample + 1
            )));
        }
        let sample = sample as i64;
        if sample > last_in_duration_run {
            duration_run += 1;
            let Some(count) = durations.get(duration_run as usize * 2) else {
                return Err(invalid("stts runs out before the samples do"));
            };
            last_in_duration_run = last_in_duration_run.max(0) + i64::from(*count);
        }
        if sample > 0 {
            // The previous sample lasts the delta of the run this one falls in (as the reader has it).
            decode_time += u64::from(durations[duration_run as usize * 2 + 1]);
        }
        if let Some(offsets) = offsets
            && sample >= last_in_offset_run
        {
            offset_run += 1;
            let Some(count) = offsets.get(offset_run as usize * 2) else {
                return Err(invalid("ctts runs out before the samples do"));
            };
            last_in_offset_run = last_in_offset_run.max(0) + i64::from(*count);
        }
    }
    Ok(decode_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(entries: &[(u32, u32)]) -> Vec<u32> {
        entries.iter().flat_map(|&(first, per)| [first, per, 1]).collect()
    }

    #[test]
    fn consistent_tables_pass() {
        // 10 samples, 2 per chunk for chunks 1-3, then 4 per chunk: chunks 1..=4.
        assert_eq!(walk(10, &runs(&[(1, 2), (4, 4)]), 4, &[10, 1], None).unwrap(), 9);
        assert_eq!(
            walk(10, &runs(&[(1, 2), (4, 4)]), 4, &[4, 1, 6, 2], Some(&[10, 0])).unwrap(),
            14
        );
    }

    #[test]
    fn contradictions_are_refused_by_name() {
        let refused = |result: MediaResult<u64>| match result {
            Err(MediaError::Invalid(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(refused(walk(10, &runs(&[(1, 2), (4, 4)]), 3, &[10, 1], None)).contains("has no offset"));
        assert!(refused(walk(10, &runs(&[]), 3, &[10, 1], None)).contains("no entries"));
        assert!(refused(walk(10, &runs(&[(1, 2), (0, 4)]), 9, &[10, 1], None)).contains("chunk 0"));
        // The reader counts a duration run's last sample inclusively: 9 samples of run 1 end at 9.
        assert!(walk(10, &runs(&[(1, 2)]), 9, &[9, 1], None).is_ok());
        assert!(refused(walk(10, &runs(&[(1, 2)]), 9, &[8, 1], None)).contains("stts runs out"));
        assert!(refused(walk(10, &runs(&[(1, 2)]), 9, &[10, 1], Some(&[5, 0]))).contains("ctts runs out"));
        // No sample per chunk: every sample moves to a chunk of its own.
        assert!(refused(walk(10, &runs(&[(1, 0)]), 5, &[10, 1], None)).contains("has no offset"));
    }
}
