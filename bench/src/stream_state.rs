//! A stream detector's stored state, JSON (before) against the binary format (after):
//! bytes per detector, and the CPU time of a one-point request, which reads the state,
//! scores and learns the point, and writes the state back (storage calls not included:
//! they cost the same bytes-per-round-trip on either side, and are measured end to end
//! by `stream_appends.sh`).
//!
//! Each detector (Half-Space Trees at the size the API documents, 25 trees of height 8;
//! Random Cut Forest and seasonal at their defaults) first learns the series' first
//! points, then takes one-point requests for the next `REQUESTS` points, each timed.
//!
//! `cargo run -p nomaly-bench --bin stream-state [-- <NAB csv> [REQUESTS]]`

use anyhow::{bail, Context, Result};
use nomaly_detect::stream::{hst, rcf, seasonal, StreamDetector, StreamSpec};
use std::time::Instant;

/// Points learned before the timed requests: past every detector's warm-up.
const WARM: usize = 2000;

fn read_series(path: &str) -> Result<Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            bail!("{path}:{}: not `timestamp,value`", i + 1);
        };
        let t = nomaly_core::time::parse_instant(t)
            .with_context(|| format!("{path}:{}: timestamp {t:?}", i + 1))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("{path}:{}: value {v:?}", i + 1))?;
        points.push((t, v));
    }
    Ok(points)
}

/// One stored form: how a state is written and read.
struct Form {
    name: &'static str,
    write: fn(&StreamDetector) -> Vec<u8>,
    read: fn(&[u8]) -> StreamDetector,
}

fn forms() -> [Form; 2] {
    [
        Form {
            name: "JSON (before)",
            write: |d| d.to_json().expect("encode"),
            read: |b| StreamDetector::from_json(b).expect("decode"),
        },
        Form {
            name: "binary v1 (after)",
            write: |d| d.to_bytes().expect("encode"),
            read: |b| StreamDetector::from_bytes(b).expect("decode"),
        },
    ]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .map_or("tests/data/nab/nyc_taxi.csv", String::as_str);
    let requests: usize = match args.get(1) {
        Some(n) => n.parse().context("REQUESTS must be a whole number")?,
        None => 500,
    };
    let series = read_series(path)?;
    if series.len() < WARM + requests {
        bail!(
            "{path} has {} points; {} are needed",
            series.len(),
            WARM + requests
        );
    }
    let specs = [
        (
            "half_space_trees 25x8",
            StreamSpec::HalfSpaceTrees {
                params: hst::HstParams {
                    n_trees: 25,
                    height: 8,
                    ..hst::HstParams::default()
                },
                shingle: 1,
            },
        ),
        (
            "random_cut_forest",
            StreamSpec::RandomCutForest {
                params: rcf::RcfParams::default(),
            },
        ),
        (
            "seasonal",
            StreamSpec::Seasonal {
                params: seasonal::SeasonalParams::default(),
            },
        ),
    ];
    println!(
        "{path}: {WARM} points learned, then {requests} one-point requests (decode, score and learn, encode), single thread"
    );
    println!(
        "{:24} {:18} {:>12} {:>12} {:>12} {:>12}",
        "detector", "form", "state bytes", "median ms", "p99 ms", "encode+decode ms"
    );
    for (label, spec) in specs {
        let mut warm = StreamDetector::new(spec, 1)?;
        for (t, v) in &series[..WARM] {
            warm.update(*t, &[*v])?;
        }
        let mut scores_by_form = Vec::new();
        for form in forms() {
            let mut bytes = (form.write)(&warm);
            let size = bytes.len();
            let mut ms = Vec::with_capacity(requests);
            let mut codec = Vec::with_capacity(requests);
            let mut scores = Vec::with_capacity(requests);
            for (t, v) in &series[WARM..WARM + requests] {
                let start = Instant::now();
                let mut d = (form.read)(&bytes);
                let decoded = start.elapsed();
                scores.push(d.update(*t, &[*v])?.score.to_bits());
                let learned = start.elapsed();
                bytes = (form.write)(&d);
                let total = start.elapsed();
                ms.push(total.as_secs_f64() * 1e3);
                codec.push((decoded + (total - learned)).as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            codec.sort_by(f64::total_cmp);
            println!(
                "{:24} {:18} {:>12} {:>12.3} {:>12.3} {:>12.3}",
                label,
                form.name,
                size,
                ms[ms.len() / 2],
                ms[ms.len() * 99 / 100],
                codec[codec.len() / 2]
            );
            scores_by_form.push(scores);
        }
        if scores_by_form[0] != scores_by_form[1] {
            bail!("{label}: the two forms gave different scores");
        }
    }
    println!("(both forms gave bit-identical scores for every request)");
    Ok(())
}
