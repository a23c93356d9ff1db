//! Scoring on the Numenta Anomaly Benchmark, as NAB v1.1 scores: every labelled anomaly has a window
//! around it; the first detection in a window earns up to `tp_weight` (more the earlier it comes,
//! along a scaled sigmoid), a window with no detection costs `fn_weight`, a detection outside every
//! window costs up to `fp_weight` (less when it is just after a window). The first 15% of each file
//! (at most 750 values) is probation and not scored. One threshold is chosen for the whole corpus,
//! the one giving the highest total, and the total is normalised so that the null detector (which
//! detects nothing) scores 0 and the perfect one 100.

use std::collections::HashMap;
use std::path::Path;

use super::{DetectorKind, SeriesHint};

/// A cost profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub tp_weight: f64,
    pub fp_weight: f64,
    pub fn_weight: f64,
}

/// One labelled series of the corpus.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its path in the corpus, such as `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    pub values: Vec<f64>,
    /// Label windows as inclusive index ranges.
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    /// What NAB tells every detector before it runs.
    pub fn hint(&self) -> SeriesHint {
        let (low, high) = self
            .values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        SeriesHint {
            range: Some((low, high)),
            probation: probation(self.values.len()),
            rests_after_alert: true,
        }
    }
}

/// `value` rounded to 12 significant digits.
pub fn as_published(value: f64) -> f64 {
    format!("{value:.11e}").parse().unwrap_or(value)
}

/// The data files, their label windows and the scoring profiles.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub series: Vec<Series>,
    pub profiles: Vec<Profile>,
}

/// The values at the start of a file that are not scored: 15%, at most 750.
pub fn probation(len: usize) -> usize {
    ((0.15 * len as f64).floor() as usize).min(750)
}

fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        // Far past the last window: the full false-positive cost.
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Where a scored value lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Region {
    Probation,
    Outside,
    /// In the window with this corpus-wide number.
    Window(usize),
}

#[derive(Clone, Copy, Debug)]
struct Point {
    anomaly: f64,
    /// What detecting this value earns (positive in a window) or costs (negative outside).
    weight: f64,
    region: Region,
}

/// The outcome of one threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub threshold: f64,
    pub score: f64,
    pub tp: u64,
    pub tn: u64,
    pub fp: u64,
    pub fn_: u64,
}

/// Each value of `series` with its region and the weight of detecting it; window numbers start at
/// `first_window`.
fn sweep(series: &Series, scores: &[f64], profile: &Profile, first_window: usize) -> Vec<Point> {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probation(series.values.len());
    let mut windows = series.windows.iter().enumerate().peekable();
    let mut current: Option<(usize, usize, f64)> = None; // (number, right edge, width)
    let mut previous: Option<(usize, f64)> = None; // (right edge, width)
    let mut points = Vec::with_capacity(scores.len());
    for (i, &anomaly) in scores.iter().enumerate() {
        if let Some(&(number, &(left, right))) = windows.peek()
            && left == i
        {
            windows.next();
            current = Some((first_window + number, right, (right - left + 1) as f64));
        }
        let weight = match (current, previous) {
            (Some((_, right, width)), _) => {
                let position = -((right - i + 1) as f64) / width;
                scaled_sigmoid(position) * profile.tp_weight / max_tp
            }
            (None, None) => -profile.fp_weight,
            (None, Some((right, width))) => {
                let position = (i.abs_diff(right)) as f64 / (width - 1.0);
                scaled_sigmoid(position) * profile.fp_weight
            }
        };
        let region = match current {
            _ if i < probation => Region::Probation,
            Some((number, _, _)) => Region::Window(number),
            None => Region::Outside,
        };
        points.push(Point {
            anomaly,
            weight,
            region,
        });
        if let Some((_, right, width)) = current
            && right == i
        {
            previous = Some((right, width));
            current = None;
        }
    }
    points
}

/// The tally at every distinct threshold, highest first, beginning with one above every score
/// (nothing detected).
fn tallies(mut points: Vec<Point>, profile: &Profile) -> Vec<Tally> {
    points.retain(|p| p.region != Region::Probation);
    points.sort_by(|a, b| b.anomaly.total_cmp(&a.anomaly));
    let windows: std::collections::HashSet<usize> = points
        .iter()
        .filter_map(|p| match p.region {
            Region::Window(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut tally = Tally {
        threshold: 1.1,
        tn: points.iter().filter(|p| p.region == Region::Outside).count() as u64,
        fn_: points.iter().filter(|p| p.region != Region::Outside).count() as u64,
        ..Tally::default()
    };
    let mut missed_cost = -(windows.len() as f64) * profile.fn_weight;
    let mut best_in_window: HashMap<usize, f64> = HashMap::new();
    let mut fp_cost = 0.0;
    let mut out = Vec::new();
    let total = |best: &HashMap<usize, f64>, missed: f64, fp: f64| missed + best.values().sum::<f64>() + fp;
    for point in &points {
        if point.anomaly != tally.threshold {
            tally.score = total(&best_in_window, missed_cost, fp_cost);
            out.push(tally);
            tally.threshold = point.anomaly;
        }
        match point.region {
            Region::Window(n) => {
                tally.tp += 1;
                tally.fn_ -= 1;
                best_in_window
                    .entry(n)
                    .and_modify(|best| *best = best.max(point.weight))
                    .or_insert_with(|| {
                        missed_cost += profile.fn_weight;
                        point.weight
                    });
            }
            _ => {
                tally.fp += 1;
                tally.tn -= 1;
                fp_cost += point.weight;
            }
        }
    }
    tally.score = total(&best_in_window, missed_cost, fp_cost);
    out.push(tally);
    out
}

/// The tally of one series when values scoring `threshold` or more are detections.
pub fn score_series(series: &Series, scores: &[f64], profile: &Profile, threshold: f64) -> Tally {
    let points = sweep(series, scores, profile, 0);
    let mut tally = Tally {
        threshold,
        ..Tally::default()
    };
    let mut best: HashMap<usize, f64> = HashMap::new();
    let mut windows = std::collections::HashSet::new();
    for point in points.iter().filter(|p| p.region != Region::Probation) {
        let detected = point.anomaly >= threshold;
        match (point.region, detected) {
            (Region::Window(n), true) => {
                windows.insert(n);
                tally.tp += 1;
                let entry = best.entry(n).or_insert(f64::NEG_INFINITY);
                *entry = entry.max(point.weight);
            }
            (Region::Window(n), false) => {
                windows.insert(n);
                tally.fn_ += 1;
            }
            (_, true) => {
                tally.fp += 1;
                tally.score += point.weight;
            }
            (_, false) => tally.tn += 1,
        }
    }
    tally.score += best.values().sum::<f64>() - (windows.len() - best.len()) as f64 * profile.fn_weight;
    tally
}

/// The threshold giving the highest corpus total; on a tie, the highest such threshold.
pub fn best_threshold(corpus: &Corpus, scores: &[Vec<f64>], profile: &Profile) -> Tally {
    let mut points = Vec::new();
    let mut first_window = 0;
    for (series, scores) in corpus.series.iter().zip(scores) {
        points.extend(sweep(series, scores, profile, first_window));
        first_window += series.windows.len();
    }
    tallies(points, profile)
        .into_iter()
        .reduce(|best, t| if t.score > best.score { t } else { best })
        .expect("the no-detection tally is always there")
}

/// 100 for the perfect detector (every window found at its start), 0 for the null one.
pub fn normalise(raw: f64, null_raw: f64, windows: usize, profile: &Profile) -> f64 {
    let perfect = windows as f64 * profile.tp_weight;
    100.0 * (raw - null_raw) / (perfect - null_raw)
}

/// A detector's results under one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileScore {
    pub profile: String,
    pub threshold: f64,
    pub raw: f64,
    pub normalised: f64,
}

impl Corpus {
    /// Reads a NAB checkout's layout: `data/<category>/<file>.csv` (timestamp,value),
    /// `labels/combined_windows.json` and `config/profiles.json`.
    pub fn load(root: &Path) -> Result<Self, String> {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
        let windows: HashMap<String, Vec<(String, String)>> =
            serde_json::from_str(&read(&root.join("labels/combined_windows.json"))?)
                .map_err(|e| format!("combined_windows.json: {e}"))?;
        let profiles: HashMap<String, ProfileFile> = serde_json::from_str(&read(&root.join("config/profiles.json"))?)
            .map_err(|e| format!("profiles.json: {e}"))?;
        let mut profiles: Vec<Profile> = profiles
            .into_iter()
            .map(|(name, p)| Profile {
                name,
                tp_weight: p.cost_matrix.tp_weight,
                fp_weight: p.cost_matrix.fp_weight,
                fn_weight: p.cost_matrix.fn_weight,
            })
            .collect();
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        let mut names: Vec<&String> = windows.keys().collect();
        names.sort();
        let mut series = Vec::new();
        for name in names {
            let text = read(&root.join("data").join(name))?;
            let mut timestamps = Vec::new();
            let mut values = Vec::new();
            for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.is_empty()) {
                let (timestamp, value) = line.split_once(',').ok_or(format!("{name}:{}: no comma", n + 1))?;
                values.push(
                    value
                        .trim()
                        .parse::<f64>()
                        .map_err(|e| format!("{name}:{}: {e}", n + 1))?,
                );
                timestamps.push(timestamp.trim().to_owned());
            }
            let index_of = |stamp: &str| {
                // Labels carry microseconds (`2014-04-10 07:15:00.000000`), the data does not.
                let stamp = stamp.strip_suffix(".000000").unwrap_or(stamp);
                timestamps
                    .iter()
                    .position(|t| t == stamp)
                    .ok_or(format!("{name}: window edge {stamp} is not a timestamp of the file"))
            };
            let windows = windows[name]
                .iter()
                .map(|(start, end)| Ok((index_of(start)?, index_of(end)?)))
                .collect::<Result<Vec<_>, String>>()?;
            series.push(Series {
                name: name.clone(),
                values,
                windows,
            });
        }
        Ok(Self { series, profiles })
    }

    pub fn window_count(&self) -> usize {
        self.series.iter().map(|s| s.windows.len()).sum()
    }

    /// Runs a fresh detector over every series, as NAB's runner does. Scores are kept to 12
    /// significant digits, as in NAB's published result files (written by Python 2, whose `str` of
    /// a float keeps 12): the Gaussian's scores only reach a threshold of 1.0 through that rounding,
    /// so scoring unrounded values would not compare with the published results.
    pub fn run(&self, kind: DetectorKind) -> Vec<Vec<f64>> {
        self.series
            .iter()
            .map(|series| {
                let mut detector = kind.build(series.hint());
                let probation = series.hint().probation;
                series
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let score = detector.score(v);
                        if i < probation { 0.0 } else { as_published(score) }
                    })
                    .collect()
            })
            .collect()
    }

    /// The scores of the null detector (0.5 everywhere), the baseline of normalisation.
    pub fn null_scores(&self) -> Vec<Vec<f64>> {
        self.series.iter().map(|s| vec![0.5; s.values.len()]).collect()
    }

    /// Scores a detector's output under every profile.
    pub fn evaluate(&self, scores: &[Vec<f64>]) -> Vec<ProfileScore> {
        let null = self.null_scores();
        self.profiles
            .iter()
            .map(|profile| {
                let best = best_threshold(self, scores, profile);
                let null_raw = best_threshold(self, &null, profile).score;
                ProfileScore {
                    profile: profile.name.clone(),
                    threshold: best.threshold,
                    raw: best.score,
                    normalised: normalise(best.score, null_raw, self.window_count(), profile),
                }
            })
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct ProfileFile {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CostMatrix {
    tp_weight: f64,
    fp_weight: f64,
    fn_weight: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> Profile {
        Profile {
            name: "standard".into(),
            tp_weight: 1.0,
            fp_weight: 0.11,
            fn_weight: 1.0,
        }
    }

    fn series() -> Series {
        Series {
            name: "s".into(),
            values: vec![0.0; 1000],
            windows: vec![(400, 499)],
        }
    }

    #[test]
    fn an_early_detection_earns_the_full_weight_and_a_miss_costs_it() {
        let mut scores = vec![0.0; 1000];
        scores[400] = 1.0;
        let hit = score_series(&series(), &scores, &standard(), 1.0);
        assert!((hit.score - 1.0).abs() < 1e-12, "{hit:?}");
        assert_eq!((hit.tp, hit.fn_, hit.fp), (1, 99, 0));
        let miss = score_series(&series(), &vec![0.0; 1000], &standard(), 1.0);
        assert_eq!(miss.score, -1.0);
    }

    #[test]
    fn late_detections_earn_less_and_false_positives_cost() {
        let mut scores = vec![0.0; 1000];
        scores[490] = 1.0;
        let late = score_series(&series(), &scores, &standard(), 1.0).score;
        assert!(late > 0.0 && late < 0.5, "{late}");
        let mut scores = vec![0.0; 1000];
        scores[400] = 1.0;
        scores[900] = 1.0;
        let with_fp = score_series(&series(), &scores, &standard(), 1.0).score;
        assert!((with_fp - (1.0 - 0.11)).abs() < 1e-9, "{with_fp}");
        // Probation values are never scored.
        let mut scores = vec![0.0; 1000];
        scores[10] = 1.0;
        assert_eq!(score_series(&series(), &scores, &standard(), 1.0).fp, 0);
    }

    #[test]
    fn the_corpus_threshold_maximises_the_total() {
        let corpus = Corpus {
            series: vec![series()],
            profiles: vec![standard()],
        };
        let mut scores = vec![0.2; 1000];
        scores[400] = 0.9;
        scores[700] = 0.8;
        let best = best_threshold(&corpus, &[scores], &standard());
        assert_eq!(best.threshold, 0.9);
        assert!((best.score - 1.0).abs() < 1e-12);
    }
}
