//! The contextual anomaly detector (CAD OSE, M. Smirnov's "Contextual Anomaly Detector, Open Source
//! Edition", as entered in NAB), written from its published description. Each value is quantised
//! into 8 levels and encoded as 3 facts (one per bit); the detector remembers contexts — a set of
//! facts (the previous step's facts plus the contexts active then, as "neuron" facts) followed by
//! the current facts — and scores a step by how few of the contexts it expected came true and how
//! many new contexts the step needed. After a high score it stays quiet for a rest period.

use std::collections::{HashMap, HashSet, VecDeque};

use super::Detector;

const LEVELS: f64 = 7.0; // 2^3 − 1
const BASE_THRESHOLD: f64 = 0.75;
const MAX_LEFT_SEMI_CONTEXT: usize = 7;
const MAX_ACTIVE_NEURONS: usize = 15;
const NEURON_BASE: u64 = 1 << 31;
/// Values a live detector (no range given) collects before fixing its quantisation range.
const LEARNING: usize = 52;

type Facts = Vec<u64>;

/// The hash CPython (3.8 and later) gives a tuple of small non-negative integers. The published
/// detector orders equally active contexts by it, so the same hash keeps its choices.
fn tuple_hash(items: &[u64]) -> i64 {
    const P1: u64 = 11_400_714_785_074_694_791;
    const P2: u64 = 14_029_467_366_897_019_727;
    const P5: u64 = 2_870_177_450_012_600_261;
    let mut acc = P5;
    for &item in items {
        acc = acc.wrapping_add(item.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    }
    acc = acc.wrapping_add(items.len() as u64 ^ (P5 ^ 3_527_539));
    if acc == u64::MAX { 1_546_275_796 } else { acc as i64 }
}

/// One side of a context: its facts, and how many of them the last crossing matched.
#[derive(Default)]
struct SemiContext {
    size: usize,
    hits: Vec<u64>,
    /// (right semi-context, context), in the order they were made (left semi-contexts only).
    links: Vec<(usize, usize)>,
    link_of: HashMap<usize, usize>,
}

#[derive(Default)]
struct Side {
    by_facts: HashMap<Facts, usize>,
    semis: Vec<SemiContext>,
    by_fact: HashMap<u64, Vec<usize>>,
    crossed: Vec<usize>,
}

impl Side {
    fn get_or_create(&mut self, facts: &Facts) -> usize {
        if let Some(&id) = self.by_facts.get(facts) {
            return id;
        }
        let id = self.semis.len();
        self.semis.push(SemiContext {
            size: facts.len(),
            ..Default::default()
        });
        self.by_facts.insert(facts.clone(), id);
        for fact in facts {
            self.by_fact.entry(*fact).or_default().push(id);
        }
        id
    }

    /// Marks in every semi-context which of `facts` it holds.
    fn cross(&mut self, facts: &[u64]) {
        for &id in &self.crossed {
            self.semis[id].hits.clear();
        }
        for fact in facts {
            if let Some(ids) = self.by_fact.get(fact) {
                for &id in ids {
                    self.semis[id].hits.push(*fact);
                }
            }
        }
        self.crossed = (0..self.semis.len())
            .filter(|&id| !self.semis[id].hits.is_empty())
            .collect();
    }
}

struct Context {
    activations: u64,
    zero_level: bool,
    left_hash: i64,
    right_hash: i64,
}

/// An active context: (id, activations, left hash, right hash), the order neurons are chosen by.
type Activation = (usize, u64, i64, i64);

/// What the previous step's contexts expected of this one.
struct Expectations {
    active: Vec<Activation>,
    /// Contexts whose left side fully matched.
    selected: usize,
    /// Partial matches that may become contexts.
    candidates: Vec<(Facts, Facts)>,
}

#[derive(Default)]
struct ContextMemory {
    left: Side,
    right: Side,
    contexts: Vec<Context>,
    /// The zero-level context made this step, which is not yet expected.
    new_context: Option<usize>,
}

impl ContextMemory {
    /// Finds or makes the context of each pair; returns how many were made.
    fn learn(&mut self, pairs: &[(Facts, Facts)], zero_level: bool) -> usize {
        let mut made = 0;
        for (left_facts, right_facts) in pairs {
            let left = self.left.get_or_create(left_facts);
            let right = self.right.get_or_create(right_facts);
            match self.left.semis[left].link_of.get(&right) {
                Some(&context) => {
                    if zero_level {
                        self.contexts[context].zero_level = true;
                        return 0;
                    }
                }
                None => {
                    let context = self.contexts.len();
                    let semi = &mut self.left.semis[left];
                    semi.link_of.insert(right, context);
                    semi.links.push((right, context));
                    self.contexts.push(Context {
                        activations: 0,
                        zero_level,
                        left_hash: tuple_hash(left_facts),
                        right_hash: tuple_hash(right_facts),
                    });
                    made += 1;
                    if zero_level {
                        self.new_context = Some(context);
                        return 1;
                    }
                }
            }
        }
        made
    }

    /// The contexts whose left side fully matched the previous step: those whose right side
    /// matches now are active; partial matches become candidate contexts when the step is new.
    fn expectations(&mut self, new_step: bool) -> Expectations {
        let (mut active, mut selected, mut candidates) = (Vec::new(), 0, Vec::new());
        for &left_id in &self.left.crossed {
            let left = &self.left.semis[left_id];
            for &(right_id, context_id) in &left.links {
                // The published code tests the new context's id against `False`, which equals 0:
                // when no context is new, context 0 is the one left out.
                if context_id == self.new_context.unwrap_or(0) {
                    continue;
                }
                let right = &self.right.semis[right_id];
                let context = &mut self.contexts[context_id];
                let partial_candidate = context.zero_level
                    && new_step
                    && !right.hits.is_empty()
                    && left.hits.len() <= MAX_LEFT_SEMI_CONTEXT;
                if left.size == left.hits.len() {
                    selected += 1;
                    if !right.hits.is_empty() {
                        if right.size == right.hits.len() {
                            context.activations += 1;
                            active.push((context_id, context.activations, context.left_hash, context.right_hash));
                        } else if partial_candidate {
                            candidates.push((left.hits.clone(), right.hits.clone()));
                        }
                    }
                } else if partial_candidate {
                    candidates.push((left.hits.clone(), right.hits.clone()));
                }
            }
        }
        self.new_context = None;
        Expectations {
            active,
            selected,
            candidates,
        }
    }
}

pub struct Contextual {
    range: Option<(f64, f64)>,
    learning: Vec<f64>,
    rest: usize,
    memory: ContextMemory,
    previous: Facts,
    recent_scores: VecDeque<f64>,
}

impl Contextual {
    /// `rest`: values after a score of 0.75 or more during which nothing is reported (NAB uses a
    /// fifth of the probation period); 0 reports every score.
    pub fn new(range: Option<(f64, f64)>, rest: usize) -> Self {
        let mut recent_scores = VecDeque::new();
        recent_scores.push_back(1.0);
        Self {
            range,
            learning: Vec::new(),
            rest,
            memory: ContextMemory::default(),
            previous: Vec::new(),
            recent_scores,
        }
    }

    fn facts(&self, value: f64) -> Facts {
        let (low, high) = self.range.expect("set before encoding");
        let span = if high - low == 0.0 { LEVELS } else { high - low };
        let level = ((value - low) / (span / LEVELS)).trunc().clamp(0.0, LEVELS) as u64;
        let mut facts: Facts = (0..3).map(|bit| 2 * bit + ((level >> bit) & 1)).collect();
        facts.sort_unstable();
        facts
    }

    /// (share of expected contexts that did not come true, share of the step that was new).
    fn step(&mut self, current: Facts) -> (f64, f64) {
        let mut unique: HashSet<(Facts, Facts)> = HashSet::new();
        let new_step = if self.previous.is_empty() {
            false
        } else {
            let pair = (self.previous.clone(), current.clone());
            unique.insert(pair.clone());
            self.memory.learn(&[pair], true) == 1
        };
        self.memory.right.cross(&current);
        let Expectations {
            mut active,
            selected,
            candidates,
        } = self.memory.expectations(new_step);
        unique.extend(candidates.iter().cloned());
        let expected_share = if selected > 0 {
            active.len() as f64 / selected as f64
        } else {
            0.0
        };
        active.sort_by_key(|&(_, activations, left, right)| (activations, left, right));
        let neurons = active
            .iter()
            .rev()
            .take(MAX_ACTIVE_NEURONS)
            .map(|(id, ..)| NEURON_BASE + *id as u64);
        let mut next: Facts = current.iter().copied().chain(neurons).collect();
        next.sort_unstable();
        next.dedup();
        let mut made = if candidates.is_empty() {
            0
        } else {
            self.memory.learn(&candidates, false)
        };
        self.memory.left.cross(&next);
        self.previous = next;
        if new_step {
            made += 1;
        }
        let new_share = if new_step && !unique.is_empty() {
            made as f64 / unique.len() as f64
        } else {
            0.0
        };
        (expected_share, new_share)
    }

    fn score_known(&mut self, value: f64) -> f64 {
        let facts = self.facts(value);
        let (expected_share, new_share) = self.step(facts);
        let current = ((1.0 - expected_share) + new_share) / 2.0;
        let quiet = self.rest == 0 || self.recent_scores.iter().all(|&s| s < BASE_THRESHOLD);
        self.recent_scores.push_back(current);
        while self.recent_scores.len() > self.rest.max(1) {
            self.recent_scores.pop_front();
        }
        if quiet { current } else { 0.0 }
    }
}

impl Detector for Contextual {
    fn score(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        if self.range.is_some() {
            return self.score_known(value);
        }
        // Live: learn the range from the first values (widened by half), then replay them.
        self.learning.push(value);
        if self.learning.len() < LEARNING {
            return 0.0;
        }
        let (low, high) = self
            .learning
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let margin = (high - low) * 0.5;
        self.range = Some((low - margin, high + margin));
        for value in std::mem::take(&mut self.learning) {
            self.score_known(value);
        }
        0.0
    }

    fn expected_range(&self) -> Option<(f64, f64)> {
        self.range
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tuple_hash_is_cpythons() {
        // hash((1, 2, 5)) and hash(()) in CPython 3.8+.
        assert_eq!(tuple_hash(&[1, 2, 5]), 2_143_910_794_424_799_510);
        assert_eq!(tuple_hash(&[]), 5_740_354_900_026_072_187);
    }

    #[test]
    fn a_repeating_pattern_is_learnt_and_a_break_in_it_scores_high() {
        let mut detector = Contextual::new(Some((0.0, 7.0)), 10);
        let pattern = [0.0, 2.0, 4.0, 6.0, 4.0, 2.0];
        let scores: Vec<f64> = (0..600).map(|i| detector.score(pattern[i % 6])).collect();
        assert!(scores[300..].iter().all(|&s| s < 0.5), "the pattern is learnt");
        let surprise = detector.score(7.0);
        assert!(surprise >= 0.5, "{surprise}");
    }

    #[test]
    fn live_detectors_learn_their_range_and_ignore_non_finite_values() {
        let mut detector = Contextual::new(None, 10);
        assert!((0..LEARNING - 1).all(|i| detector.score(i as f64) == 0.0));
        assert_eq!(detector.score(f64::NAN), 0.0);
        detector.score(51.0);
        let (low, high) = detector.expected_range().unwrap();
        assert!(low < 0.0 && high > 51.0);
        assert!(detector.score(1e12).is_finite());
    }
}
