//! The process' CPU time and resident memory, from Linux's `/proc/self`, and its limit of open
//! files.

use model::monitoring::{ProcessProbe, ProcessUsage};

pub struct ProcSelf {
    ticks_per_second: f64,
    page_size: u64,
}

impl ProcSelf {
    pub fn new() -> Self {
        // SAFETY: sysconf only reads system constants.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        Self {
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    }
}

impl Default for ProcSelf {
    fn default() -> Self {
        Self::new()
    }
}

/// utime + stime (fields 14 and 15 of `/proc/self/stat`), counted after the command name, which
/// may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

impl ProcessProbe for ProcSelf {
    fn usage(&self) -> Option<ProcessUsage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(ProcessUsage {
            cpu_seconds: cpu_ticks(&stat)? as f64 / self.ticks_per_second,
            rss_bytes: resident_pages * self.page_size,
        })
    }
}

/// Caps glibc's malloc arenas at one per core (two at least; glibc's own cap is eight per core).
/// Threads that contend for the allocator get arenas of their own, and a freed block stays in
/// the arena it came from: serving 16 WebSocket downloads of 256 KiB blocks, peak RSS was
/// 134-145 MiB with glibc's default and 106-113 MiB with two arenas on two cores, at the same
/// throughput. Called before the server's threads start. Returns whether the allocator took it.
pub fn limit_malloc_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt sets one parameter of the allocator and touches no memory of ours.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Raises the soft limit of open files to the hard one, as a server of many connections needs:
/// every WebRTC viewer holds a UDP socket, and a shell's usual soft limit of 1024 let a server
/// take fewer than a thousand viewers while the hard limit allowed far more. Returns the soft
/// limit before and after (the same when it could not be raised: that is logged, and the limit
/// still holds).
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                let error = std::io::Error::last_os_error();
                tracing::warn!(%error, before, "open files limit not raised");
                return Ok((before, before));
            }
        }
        Ok((before, limit.rlim_cur))
    }
}

/// Open files kept for everything but WebRTC viewers: block files, the database, other clients.
const FILES_KEPT_FOR_THE_REST: u64 = 256;
/// Open files a WebRTC viewer takes: its connection's UDP socket, and the HTTP connection or
/// WebSocket it signals over, which a browser keeps open while it plays.
const FILES_PER_VIEWER: u64 = 2;

/// How many WebRTC connections an open files limit leaves room for.
pub fn connections_within(open_files_limit: u64) -> usize {
    let room = open_files_limit
        .saturating_sub(FILES_KEPT_FOR_THE_REST)
        .max(open_files_limit / 2)
        / FILES_PER_VIEWER;
    usize::try_from(room).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_allocator_takes_the_arena_cap() {
        assert!(limit_malloc_arenas());
    }

    #[test]
    fn connections_leave_room_for_the_rest() {
        assert_eq!(connections_within(1024), 384);
        assert_eq!(connections_within(300), 75);
        assert_eq!(connections_within(1 << 20), ((1 << 20) - 256) / 2);
    }

    #[test]
    fn cpu_ticks_are_read_past_a_name_with_spaces() {
        let stat = "1234 (ipfs (x) stream) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 1000 300";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let usage = ProcSelf::new().usage().expect("Linux has /proc/self");
        assert!(usage.rss_bytes > 1 << 20);
        assert!(usage.cpu_seconds >= 0.0);
    }
}
