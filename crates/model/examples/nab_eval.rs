//! Scores ipfs-stream's anomaly detectors on the Numenta Anomaly Benchmark: one JSON line per
//! detector with its normalised score under each profile, then one per published detector read
//! from the corpus' `results/final_results.json`, for comparison.
//!
//! `cargo run --release -p ipfs-stream-model --example nab_eval -- tests/fixtures/nab`

use std::path::PathBuf;
use std::time::Instant;

use model::anomaly::DetectorKind;
use model::anomaly::nab::Corpus;

fn main() -> Result<(), String> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/nab".into()));
    let corpus = Corpus::load(&root)?;
    let samples: usize = corpus.series.iter().map(|s| s.values.len()).sum();
    for kind in DetectorKind::ALL {
        let started = Instant::now();
        let scores = corpus.run(kind);
        let per_sample_ns = started.elapsed().as_nanos() as f64 / samples as f64;
        let mut line = serde_json::json!({ "detector": kind.name() });
        for score in corpus.evaluate(&scores) {
            line[&score.profile] = serde_json::json!((score.normalised * 10.0).round() / 10.0);
            line["thresholds"][&score.profile] = serde_json::json!(score.threshold);
        }
        line["cpu_ns_per_sample"] = serde_json::json!(per_sample_ns.round());
        println!("{line}");
    }
    let published = std::fs::read_to_string(root.join("results/final_results.json")).map_err(|e| e.to_string())?;
    let published: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&published).map_err(|e| e.to_string())?;
    for (detector, scores) in published {
        let mut line = serde_json::json!({ "detector": detector, "published": true });
        for (profile, score) in scores.as_object().into_iter().flatten() {
            line[profile] = serde_json::json!((score.as_f64().unwrap_or(f64::NAN) * 10.0).round() / 10.0);
        }
        println!("{line}");
    }
    Ok(())
}
