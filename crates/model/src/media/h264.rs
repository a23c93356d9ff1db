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

/// Whether a coded slice (NAL types 1 and 5) is a B slice: its `slice_type`, the second
/// Exp-Golomb number of the slice header, is 1 or 6.
pub fn is_b_slice(nal: &[u8]) -> bool {
    if !matches!(nal_type(nal), 1 | NAL_IDR) {
        return false;
    }
    // The header's first bytes, without emulation prevention (00 00 03 → 00 00).
    let mut header = Vec::with_capacity(16);
    let mut zeros = 0;
    for &byte in nal.iter().skip(1).take(16) {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        header.push(byte);
    }
    let mut bits = header
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1));
    let mut exp_golomb = || {
        let mut leading = 0;
        loop {
            match bits.next()? {
                0 if leading < 32 => leading += 1,
                0 => return None,
                _ => break,
            }
        }
        let mut value = 0u64;
        for _ in 0..leading {
            value = (value << 1) | u64::from(bits.next()?);
        }
        Some((1u64 << leading) - 1 + value)
    };
    let _first_mb_in_slice = exp_golomb();
    exp_golomb().is_some_and(|slice_type| slice_type % 5 == 1)
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
    fn b_slices_are_told_from_the_others() {
        // first_mb_in_slice 0 ("1"), then slice_type: P 0 ("1"), B 1 ("010"), I 7 ("0001000").
        assert!(!is_b_slice(&[0x41, 0b1100_0000]));
        assert!(is_b_slice(&[0x01, 0b1010_0000]));
        assert!(!is_b_slice(&[0x65, 0b1000_1000]));
        // B with all slices alike (6: "00111"); an SPS is no slice.
        assert!(is_b_slice(&[0x01, 0b1001_1100]));
        assert!(!is_b_slice(&[0x67, 0b1010_0000]));
    }

    #[test]
    fn high_profile_is_refused_by_name() {
        assert!(check_profile(66).is_ok() && check_profile(77).is_ok());
        let error = check_profile(100).unwrap_err().to_string();
        assert!(error.contains("High profile"), "{error}");
    }
}
