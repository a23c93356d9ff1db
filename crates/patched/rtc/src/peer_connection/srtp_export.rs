//! Patched: not upstream. Hands an application its own copy of a connection's SRTP contexts,
//! so it can protect and send media on the connection's socket itself (see `PATCHED.md`).

use std::sync::OnceLock;

use srtp::context::Context;

/// A connection's SRTP contexts, fresh copies of the ones the stack itself uses: `local`
/// protects what this endpoint sends, `remote` opens what it receives.
pub struct ExportedSrtp {
    /// The SHA-256 fingerprints (lowercase hex, colon-separated, as in SDP) of the local
    /// certificates: which connection this is, as its local description says.
    pub local_fingerprints: Vec<String>,
    /// Protects what this endpoint sends (SRTP and SRTCP).
    pub local: Context,
    /// Opens what this endpoint receives (SRTP and SRTCP), with its own replay window.
    pub remote: Context,
}

/// Receives the contexts of every DTLS handshake that completes in this process.
pub type SrtpExportHook = Box<dyn Fn(ExportedSrtp) + Send + Sync>;

static HOOK: OnceLock<SrtpExportHook> = OnceLock::new();

/// Installs the process's hook; false if one was installed already.
pub fn set_srtp_export_hook(hook: SrtpExportHook) -> bool {
    HOOK.set(hook).is_ok()
}

pub(crate) fn hook() -> Option<&'static SrtpExportHook> {
    HOOK.get()
}
