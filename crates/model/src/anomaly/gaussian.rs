//! The windowed-Gaussian baseline: the tail probability of a value under a normal distribution
//! fitted to a window of past values, refitted every `step` values once the window is full.

use super::Detector;

pub struct WindowedGaussian {
    capacity: usize,
    step: usize,
    window: Vec<f64>,
    pending: Vec<f64>,
    mean: f64,
    std: f64,
}

impl WindowedGaussian {
    /// The window NAB's baseline uses (6400 values, refitted every 100).
    pub const NAB_WINDOW: usize = 6400;

    pub fn new(capacity: usize, step: usize) -> Self {
        Self {
            capacity: capacity.max(2),
            step: step.clamp(1, capacity.max(2)),
            window: Vec::new(),
            pending: Vec::new(),
            mean: 0.0,
            std: 1.0,
        }
    }

    fn refit(&mut self) {
        let n = self.window.len() as f64;
        self.mean = self.window.iter().sum::<f64>() / n;
        let variance = self.window.iter().map(|v| (v - self.mean).powi(2)).sum::<f64>() / n;
        // A constant window would make every different value infinitely unlikely.
        self.std = if variance == 0.0 { 1e-6 } else { variance.sqrt() };
    }

    /// P(X ≥ |value − mean|) on the fitted normal: the two sides are folded onto one tail.
    fn tail_probability(&self, value: f64) -> f64 {
        let z = (value - self.mean).abs() / self.std;
        1.0 - 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
    }
}

impl Detector for WindowedGaussian {
    fn score(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let score = if self.window.is_empty() {
            0.0
        } else {
            1.0 - self.tail_probability(value)
        };
        if self.window.len() < self.capacity {
            self.window.push(value);
            self.refit();
        } else {
            self.pending.push(value);
            if self.pending.len() == self.step {
                self.window.drain(..self.step);
                self.window.append(&mut self.pending);
                self.refit();
            }
        }
        score
    }

    fn expected_range(&self) -> Option<(f64, f64)> {
        // Three standard deviations: what the baseline scores below 0.997.
        (!self.window.is_empty()).then_some((self.mean - 3.0 * self.std, self.mean + 3.0 * self.std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_value_scores_near_one_and_an_ordinary_one_low() {
        let mut detector = WindowedGaussian::new(100, 10);
        for i in 0..100 {
            detector.score(10.0 + (i % 5) as f64);
        }
        assert!(detector.score(12.0) < 0.9);
        assert!(detector.score(1000.0) > 0.999);
        let (low, high) = detector.expected_range().unwrap();
        assert!(low < 12.0 && high > 12.0 && high < 20.0);
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut detector = WindowedGaussian::new(10, 2);
        for v in [1.0, f64::NAN, f64::INFINITY, 2.0, f64::NEG_INFINITY] {
            let score = detector.score(v);
            assert!(score.is_finite() && (0.0..=1.0).contains(&score));
        }
        assert_eq!(detector.window, vec![1.0, 2.0]);
    }
}
