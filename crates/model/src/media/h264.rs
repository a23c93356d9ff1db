//! H.264 bitstream helpers: NAL units, profiles WebRTC can carry, AVCC (length-prefixed) to
//! Annex-B (start codes).

use super::{MediaError, MediaResult};

pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Baseline (66), constrained baseline and main (77) are what browsers decode over WebRTC.
pub fn check_profile(profile_idc: u8) -> MediaResult<()> {
    match profile_idc {
        66 | 77 => Ok(()),
        100 => Err(MediaError::Unsupported(
            "H.264 High profile (WebRTC players decode baseline and main)".into(),
        )),
        other => Err(MediaError::Unsupported(format!(
            "H.264 profile {other} (WebRTC players decode baseline (66) and main (77))"
        ))),
    }
}

/// Appends the NAL units of an AVCC sample (each prefixed by its `length_size`-byte length) to
/// `out` as Annex-B.
pub fn avcc_to_annexb(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> MediaResult<()> {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return Err(MediaError::Invalid("H.264 sample ends inside a NAL length".into()));
        }
        let len = rest[..length_size].iter().fold(0usize, |n, b| (n << 8) | *b as usize);
        rest = &rest[length_size..];
        if len > rest.len() {
            return Err(MediaError::Invalid("H.264 NAL unit runs past its sample".into()));
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(())
}

/// The NAL units of an Annex-B buffer (without their start codes).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
            // A 4-byte start code leaves one more zero before the next unit.
            while end > start && data[end - 1] == 0 && n + 1 < starts.len() {
                end -= 1;
            }
            &data[start..end]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_becomes_annexb_and_splits_back() {
        let avcc = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41];
        let mut annexb = Vec::new();
        avcc_to_annexb(&avcc, 4, &mut annexb).unwrap();
        assert_eq!(annexb, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        let units = nal_units(&annexb);
        assert_eq!(units, vec![&[0x65, 0xaa][..], &[0x41][..]]);
        assert_eq!(nal_type(units[0]), NAL_IDR);
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 1], 4, &mut Vec::new()).is_err());
    }

    #[test]
    fn high_profile_is_refused_by_name() {
        assert!(check_profile(66).is_ok() && check_profile(77).is_ok());
        let error = check_profile(100).unwrap_err().to_string();
        assert!(error.contains("High profile"), "{error}");
    }
}
