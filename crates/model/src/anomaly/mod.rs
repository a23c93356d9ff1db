//! Online anomaly detection over sampled series: a [`Detector`] scores each new value from 0
//! (ordinary) to 1 (anomalous) using only the values before it. [`nab`] scores detectors on the
//! Numenta Anomaly Benchmark the way NAB itself does.

mod contextual;
mod entropy;
mod gaussian;
pub mod nab;

pub use contextual::Contextual;
pub use entropy::RelativeEntropy;
pub use gaussian::WindowedGaussian;

/// What a detector may know of a series before it starts: the benchmark gives the series' range
/// (as NAB does for every detector); a live series has none and detectors learn it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesHint {
    pub range: Option<(f64, f64)>,
    /// Values during which the detector is still learning; it scores them 0.
    pub probation: usize,
    /// Whether the detector itself stays quiet for a while after a high score. NAB rewards only
    /// the first detection in a window, so the benchmark wants it; a live series has its own
    /// cooldown, which lets a value far beyond the ordinary through.
    pub rests_after_alert: bool,
}

/// An online detector of one series.
pub trait Detector: Send {
    /// Scores `value` against what came before, then learns it. Values that are not finite are
    /// scored 0 and not learnt.
    fn score(&mut self, value: f64) -> f64;

    /// The range of values the detector currently considers ordinary, if it has one.
    fn expected_range(&self) -> Option<(f64, f64)>;
}

/// The detectors ipfs-stream ships, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    WindowedGaussian,
    RelativeEntropy,
    Contextual,
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
            format!("{name:?} is not one of {}", names.join(", "))
        })
    }
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 3] = [
        DetectorKind::WindowedGaussian,
        DetectorKind::RelativeEntropy,
        DetectorKind::Contextual,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::WindowedGaussian => "windowed_gaussian",
            Self::RelativeEntropy => "relative_entropy",
            Self::Contextual => "contextual",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The score from which the detector's output is an alert: the threshold NAB's optimisation
    /// picks for it (the Gaussian saturates at 1 only far in the tails; relative entropy is 0 or 1).
    pub fn alert_threshold(self) -> f64 {
        match self {
            Self::WindowedGaussian => 1.0,
            Self::RelativeEntropy => 0.5,
            // Where NAB's corpus-wide optimisation puts it (0.7686 under all three profiles).
            Self::Contextual => 0.768,
        }
    }

    /// A detector configured as the benchmark runs it.
    pub fn build(self, hint: SeriesHint) -> Box<dyn Detector> {
        match self {
            Self::WindowedGaussian => Box::new(WindowedGaussian::new(WindowedGaussian::NAB_WINDOW, 100)),
            Self::RelativeEntropy => Box::new(RelativeEntropy::new(hint.range)),
            Self::Contextual => {
                let rest = if hint.rests_after_alert { hint.probation / 5 } else { 0 };
                Box::new(Contextual::new(hint.range, rest))
            }
        }
    }
}
