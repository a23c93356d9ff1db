//! The SRTP contexts the stack exports when a DTLS handshake completes (a process-wide hook of our
//! patched `rtc`), kept until the connection they belong to claims them by its fingerprint.

use super::*;

/// The SRTP contexts of completed handshakes, until their connection claims them.
pub(super) static EXPORTED: Mutex<Vec<(Instant, ExportedSrtp)>> = Mutex::new(Vec::new());

/// Has the stack hand over its SRTP contexts from now on (once per process): what the direct
/// path of any later connection needs.
pub(crate) fn export_srtp_contexts() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        set_srtp_export_hook(Box::new(|exported| {
            let mut all = EXPORTED.lock().expect("not poisoned");
            all.retain(|(at, _)| at.elapsed() < EXPORT_LIFETIME);
            all.push((Instant::now(), exported));
        }));
    });
}

/// The contexts exported for the connection whose certificate has `fingerprint` (as its local
/// description gives it).
pub(super) fn claim_exported(fingerprint: &str) -> Option<ExportedSrtp> {
    let mut all = EXPORTED.lock().expect("not poisoned");
    let index = all.iter().position(|(_, exported)| {
        exported
            .local_fingerprints
            .iter()
            .any(|own| own.eq_ignore_ascii_case(fingerprint))
    })?;
    Some(all.swap_remove(index).1)
}

/// The SHA-256 certificate fingerprints an SDP announces.
pub(crate) fn sdp_fingerprints(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a=fingerprint:"))
        .filter_map(|value| value.split_once(' '))
        .filter(|(algorithm, _)| algorithm.eq_ignore_ascii_case("sha-256"))
        .map(|(_, fingerprint)| fingerprint.trim().to_owned())
        .collect()
}
