//! Where recently read blocks are: a read looks here before it asks the pack index.
//!
//! A file's blocks are read in the order an import wrote them into its pack, so a lookup that
//! misses brings the locations of the blocks after it in the same pack (a run): reading a file
//! through asks the index once per run, not once per block.
//!
//! A location is trusted for a short time after it was looked up. This process forgets the
//! blocks it deletes at once, and a lookup under way meanwhile is not kept (it may have seen the
//! block before the delete); a block deleted by another process sharing the data dir
//! (`ipfs-stream repo gc` beside the server) stops being read here within that time, as a read
//! already under way when it was deleted would have been. A location whose pack is gone
//! (compaction moved its block) is forgotten by the read that finds it gone.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::pack_index::Location;

/// Blocks looked up at once: the one wanted and those after it in its pack (8 MiB of the default
/// 256 KiB chunks).
pub(crate) const RUN_LENGTH: u32 = 32;
/// How long a looked-up location is used before the index is asked again.
pub(crate) const TRUSTED_FOR: Duration = Duration::from_secs(2);
/// Locations kept at most, counted as the runs hold them, about 300 bytes each (5 MiB). Runs older
/// than [`TRUSTED_FOR`] go at the next lookup, so the map holds what was read in the last two
/// seconds, up to this many blocks (4 GiB at the default chunk size).
pub(crate) const CAPACITY: usize = 16_384;

pub(crate) struct BlockLocations {
    trusted_for: Duration,
    capacity: usize,
    entries: HashMap<Vec<u8>, Cached>,
    /// The runs in the order they were looked up, each with its keys: the oldest go first.
    runs: VecDeque<Run>,
    /// Keys the runs hold, forgotten ones included: what the capacity bounds.
    held: usize,
    /// Runs looked up so far: the index lookups that reads made.
    next_run: u64,
    /// Changes whenever blocks are forgotten: a run looked up before that may hold them.
    generation: u64,
}

struct Cached {
    location: Location,
    run: u64,
    looked_up: Instant,
}

struct Run {
    id: u64,
    looked_up: Instant,
    keys: Vec<Vec<u8>>,
}

impl BlockLocations {
    pub(crate) fn new(trusted_for: Duration, capacity: usize) -> Self {
        Self {
            trusted_for,
            capacity,
            entries: HashMap::new(),
            runs: VecDeque::new(),
            held: 0,
            next_run: 0,
            generation: 0,
        }
    }

    /// What a lookup notes before it asks the index, and hands to [`BlockLocations::insert_run`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The block's location, if it was looked up within the trusted time.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Location> {
        let cached = self.entries.get(key)?;
        (now.saturating_duration_since(cached.looked_up) < self.trusted_for).then(|| cached.location.clone())
    }

    /// Keeps a run the index just answered, unless blocks were forgotten since `generation` (the
    /// run may have been read before they were deleted); makes room by forgetting the oldest runs.
    pub(crate) fn insert_run(&mut self, run: Vec<(Vec<u8>, Location)>, now: Instant, generation: u64) {
        if run.is_empty() || generation != self.generation {
            return;
        }
        while let Some(oldest) = self.runs.front() {
            let stale = now.saturating_duration_since(oldest.looked_up) >= self.trusted_for;
            if !stale && self.held + run.len() <= self.capacity {
                break;
            }
            let oldest = self.runs.pop_front().expect("a front run");
            self.held -= oldest.keys.len();
            for key in oldest.keys {
                // A key looked up again since belongs to its newer run.
                if self.entries.get(&key).is_some_and(|cached| cached.run == oldest.id) {
                    self.entries.remove(&key);
                }
            }
        }
        let id = self.next_run;
        self.next_run += 1;
        let mut keys = Vec::with_capacity(run.len());
        for (key, location) in run.into_iter().take(self.capacity) {
            keys.push(key.clone());
            self.entries.insert(
                key,
                Cached {
                    location,
                    run: id,
                    looked_up: now,
                },
            );
        }
        self.held += keys.len();
        self.runs.push_back(Run {
            id,
            looked_up: now,
            keys,
        });
    }

    /// Forgets one block (deleted here, or its pack found gone).
    pub(crate) fn forget(&mut self, key: &[u8]) {
        self.entries.remove(key);
        self.generation += 1;
    }

    /// Forgets every block (packs were removed here).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.runs.clear();
        self.held = 0;
        self.generation += 1;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn runs_looked_up(&self) -> u64 {
        self.next_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pack: &str, keys: std::ops::Range<u8>) -> Vec<(Vec<u8>, Location)> {
        keys.map(|k| {
            let location = Location {
                pack: pack.to_owned(),
                offset: u64::from(k) * 100,
                length: 100,
            };
            (vec![k], location)
        })
        .collect()
    }

    #[test]
    fn a_run_answers_for_every_block_in_it_for_the_trusted_time_only() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 100);
        locations.insert_run(run("a.pack", 0..4), start, 0);
        let third = locations.get(&[2], start + Duration::from_secs(1)).unwrap();
        assert_eq!((third.pack.as_str(), third.offset), ("a.pack", 200));
        assert!(locations.get(&[9], start).is_none(), "never looked up");
        assert!(
            locations.get(&[2], start + Duration::from_secs(2)).is_none(),
            "no longer trusted"
        );
    }

    #[test]
    fn the_oldest_runs_make_room_and_stale_ones_go_at_the_next_insert() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 10);
        locations.insert_run(run("a.pack", 0..6), start, 0);
        locations.insert_run(run("b.pack", 10..16), start, 0);
        assert!(locations.get(&[0], start).is_none(), "the older run made room");
        assert!(locations.get(&[10], start).is_some());
        assert_eq!(locations.len(), 6);

        locations.insert_run(run("c.pack", 20..21), start + Duration::from_secs(3), 0);
        assert_eq!(locations.len(), 1, "the stale run went");
    }

    #[test]
    fn a_block_looked_up_again_stays_when_its_older_run_goes() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 8);
        locations.insert_run(run("a.pack", 0..4), start, 0);
        // Blocks 2 and 3 again, moved to another pack since.
        locations.insert_run(run("b.pack", 2..6), start, 0);
        locations.insert_run(run("c.pack", 10..14), start, 0);
        assert!(locations.get(&[0], start).is_none());
        assert_eq!(locations.get(&[2], start).unwrap().pack, "b.pack");
    }

    #[test]
    fn a_forgotten_block_is_looked_up_again() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 100);
        locations.insert_run(run("a.pack", 0..4), start, 0);
        locations.forget(&[1]);
        assert!(locations.get(&[1], start).is_none());
        assert!(locations.get(&[2], start).is_some());
        locations.clear();
        assert!(locations.get(&[2], start).is_none());
    }

    #[test]
    fn a_run_looked_up_before_a_block_was_forgotten_is_not_kept() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 100);
        let before = locations.generation();
        // Deleted while the index answered a lookup that saw it.
        locations.forget(&[1]);
        locations.insert_run(run("a.pack", 0..4), start, before);
        assert!(locations.get(&[1], start).is_none());
        assert!(locations.get(&[0], start).is_none());
        locations.insert_run(run("a.pack", 0..4), start, locations.generation());
        assert!(locations.get(&[0], start).is_some());
    }

    #[test]
    fn keys_forgotten_from_a_run_still_count_until_it_goes() {
        let start = Instant::now();
        let mut locations = BlockLocations::new(Duration::from_secs(2), 8);
        locations.insert_run(run("a.pack", 0..6), start, 0);
        for key in 0..6 {
            locations.forget(&[key]);
        }
        locations.insert_run(run("b.pack", 10..14), start, locations.generation());
        assert_eq!(locations.runs.len(), 1, "the first run went to make room");
        assert_eq!(locations.held, 4);
    }
}
