//! Relative-entropy hypothesis testing (Wang et al., "Statistical techniques for online anomaly
//! detection in data centers", 2011): the last `W` values are quantised into bins and their
//! histogram compared with the histograms seen before (the hypotheses). A window unlike every
//! known hypothesis — its relative entropy to each, times 2W, above the χ² critical value — is
//! anomalous and becomes a new hypothesis; one that matches a hypothesis seen only once so far is
//! anomalous too.

use std::collections::VecDeque;

use super::Detector;

const BINS: usize = 5;
const WINDOW: usize = 52;
/// The χ² value with BINS−1 degrees of freedom exceeded with probability 0.01.
const CRITICAL: f64 = 13.276_704_135_987_622;
/// A hypothesis matched this many times or fewer still flags the window matching it.
const RARE: u32 = 1;

pub struct RelativeEntropy {
    /// Quantisation bounds: given, or learnt from the values seen.
    range: Option<(f64, f64)>,
    learns_range: bool,
    recent: VecDeque<f64>,
    seen: u64,
    hypotheses: Vec<([f64; BINS], u32)>,
}

impl RelativeEntropy {
    /// With the series' range known up front (the benchmark's setting), or learnt (live series).
    pub fn new(range: Option<(f64, f64)>) -> Self {
        Self {
            range,
            learns_range: range.is_none(),
            recent: VecDeque::with_capacity(WINDOW + 1),
            seen: 0,
            hypotheses: Vec::new(),
        }
    }

    /// Widens a learnt range to hold `value`, with a margin so it is not redone at every new
    /// extreme; the histograms seen under the old bins no longer compare, so they are dropped.
    /// Returns whether the value fell outside the range.
    fn learn_range(&mut self, value: f64) -> bool {
        let (low, high) = self.range.unwrap_or((value, value));
        if value >= low && value <= high && self.range.is_some() {
            return false;
        }
        let (low, high) = (low.min(value), high.max(value));
        let margin = (high - low) * 0.25;
        self.range = Some((low - margin, high + margin));
        self.hypotheses.clear();
        true
    }

    fn histogram(&self, low: f64, step: f64) -> Option<[f64; BINS]> {
        let mut counts = [0u32; BINS];
        for value in &self.recent {
            let bin = ((value - low) / step).ceil();
            // Bins are [0,1), [1,2) … [4,5]: the top edge belongs to the last one; values outside
            // are left out, as a histogram over a fixed range does.
            if (0.0..=BINS as f64).contains(&bin) {
                counts[(bin as usize).min(BINS - 1)] += 1;
            }
        }
        let total: u32 = counts.iter().sum();
        (total > 0).then(|| counts.map(|c| c as f64 / total as f64))
    }

    /// The best-agreeing hypothesis: the lowest statistic below the critical value.
    fn agreeing(&self, observed: &[f64; BINS]) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (index, (hypothesis, _)) in self.hypotheses.iter().enumerate() {
            let statistic = 2.0 * WINDOW as f64 * relative_entropy(observed, hypothesis);
            if statistic < CRITICAL && best.is_none_or(|(_, lowest)| statistic < lowest) {
                best = Some((index, statistic));
            }
        }
        best.map(|(index, _)| index)
    }
}

/// D(p‖q) in nats; infinite where q has no mass and p has some.
fn relative_entropy(p: &[f64; BINS], q: &[f64; BINS]) -> f64 {
    let q_total: f64 = q.iter().sum();
    p.iter()
        .zip(q)
        .map(|(&p, &q)| {
            let q = q / q_total;
            match (p > 0.0, q > 0.0) {
                (false, _) => 0.0,
                (true, true) => p * (p / q).ln(),
                (true, false) => f64::INFINITY,
            }
        })
        .sum()
}

impl Detector for RelativeEntropy {
    fn score(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        // Live, a value beyond everything seen (past the first window) is itself anomalous,
        // whatever the histograms say after the range is redrawn.
        self.seen += 1;
        let outlier = self.learns_range && self.learn_range(value) && self.seen > WINDOW as u64;
        let score = self.compare_window(value);
        if outlier { 1.0 } else { score }
    }

    fn expected_range(&self) -> Option<(f64, f64)> {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for value in &self.recent {
            low = low.min(*value);
            high = high.max(*value);
        }
        low.is_finite().then_some((low, high))
    }
}

impl RelativeEntropy {
    /// Adds `value` to the window and tests the window against the hypotheses.
    fn compare_window(&mut self, value: f64) -> f64 {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(value);
        let Some((low, high)) = self.range else { return 0.0 };
        let step = (high - low) / BINS as f64;
        // A constant series has nothing to quantise, and nothing in it is anomalous.
        if step == 0.0 || self.recent.len() < WINDOW {
            return 0.0;
        }
        let Some(observed) = self.histogram(low, step) else {
            return 0.0;
        };
        if self.hypotheses.is_empty() {
            self.hypotheses.push((observed, 1));
            return 0.0;
        }
        match self.agreeing(&observed) {
            Some(index) => {
                let seen = &mut self.hypotheses[index].1;
                *seen += 1;
                if *seen <= RARE { 1.0 } else { 0.0 }
            }
            None => {
                self.hypotheses.push((observed, 1));
                1.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_distribution_is_anomalous_once_then_learnt() {
        let mut detector = RelativeEntropy::new(Some((0.0, 100.0)));
        let steady = |i: usize| 10.0 + (i % 7) as f64;
        let scores: Vec<f64> = (0..200).map(|i| detector.score(steady(i))).collect();
        assert!(scores.iter().all(|&s| s == 0.0));
        let shifted: Vec<f64> = (0..200).map(|i| detector.score(80.0 + (i % 7) as f64)).collect();
        assert!(shifted.contains(&1.0), "the shift is flagged");
        assert!(shifted[150..].iter().all(|&s| s == 0.0), "and learnt once it persists");
    }

    #[test]
    fn a_learnt_range_grows_and_constant_series_are_quiet() {
        let mut detector = RelativeEntropy::new(None);
        assert!((0..100).all(|_| detector.score(5.0) == 0.0));
        for i in 0..100 {
            detector.score(i as f64);
        }
        let (low, high) = detector.range.unwrap();
        assert!(low <= 0.0 && high >= 99.0);
        assert_eq!(detector.score(50.0), 0.0);
        assert_eq!(detector.score(10_000.0), 1.0, "a value beyond the learnt range");
        for v in [f64::NAN, f64::INFINITY] {
            assert_eq!(detector.score(v), 0.0);
        }
    }
}
