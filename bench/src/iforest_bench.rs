//! Times nomaly's Isolation Forest on one matrix and prints one JSON line.
//!
//! ```text
//! iforest-bench --raw FILE --cols D [--threads N] [--repeat R]   # little-endian f64, row-major
//! iforest-bench --csv FILE [--exclude a,b] [--threads N] [--repeat R]
//! ```
//!
//! Reports, each the median of `--repeat` runs: `fit_s` (growing the trees), `score_s`
//! (one scoring pass over every row), `fit_score_s` (fitting a model with its threshold,
//! which scores every training row once); `parse_s` for a CSV; a hash of the score bits
//! (equal hashes at different thread counts mean identical scores); and the process's
//! peak resident memory. `--threads 0` uses every core.

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use nomaly_core::table::{read_csv, CsvOptions};
use nomaly_detect::iforest::{IForest, Params};
use nomaly_detect::{Algorithm, FitOptions, Model, ThresholdRule};
use std::time::Instant;

struct Opts {
    raw: Option<String>,
    csv: Option<String>,
    cols: usize,
    exclude: Vec<String>,
    threads: usize,
    repeat: usize,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        raw: None,
        csv: None,
        cols: 0,
        exclude: Vec::new(),
        threads: 0,
        repeat: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--raw" => o.raw = Some(val()?),
            "--csv" => o.csv = Some(val()?),
            "--cols" => o.cols = val()?.parse()?,
            "--exclude" => o.exclude = val()?.split(',').map(String::from).collect(),
            "--threads" => o.threads = val()?.parse()?,
            "--repeat" => o.repeat = val()?.parse::<usize>()?.max(1),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let o = parse_args()?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads)
        .build_global()?;
    let mut parse_s = None;
    let x: Array2<f64> = match (&o.raw, &o.csv) {
        (Some(path), None) => {
            if o.cols == 0 {
                bail!("--raw needs --cols");
            }
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            let values: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            let rows = values.len() / o.cols;
            Array2::from_shape_vec((rows, o.cols), values)?
        }
        (None, Some(path)) => {
            let mut times = Vec::new();
            let mut table = None;
            for _ in 0..o.repeat {
                let t = Instant::now();
                let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
                table = Some(read_csv(file, &CsvOptions::dataset(&o.exclude))?);
                times.push(t.elapsed().as_secs_f64());
            }
            parse_s = Some(median(times));
            table.context("no table")?.data
        }
        _ => bail!("give exactly one of --raw FILE or --csv FILE"),
    };
    let params = Params::default();
    let mut fit_times = Vec::new();
    let mut forest = None;
    for _ in 0..o.repeat {
        let t = Instant::now();
        forest = Some(IForest::fit(x.view(), &params, 0)?);
        fit_times.push(t.elapsed().as_secs_f64());
    }
    drop(forest);
    let options = FitOptions {
        threshold: ThresholdRule::Contamination(0.1),
        ..FitOptions::new(Algorithm::Iforest(params))
    };
    let mut fit_score_times = Vec::new();
    let mut model = None;
    for _ in 0..o.repeat {
        let t = Instant::now();
        model = Some(Model::fit(x.view(), &options)?.model);
        fit_score_times.push(t.elapsed().as_secs_f64());
    }
    let model = model.context("no model")?;
    let mut score_times = Vec::new();
    let mut scores = Vec::new();
    for _ in 0..o.repeat {
        let t = Instant::now();
        scores = model.score(x.view())?;
        score_times.push(t.elapsed().as_secs_f64());
    }
    // FNV-1a over the score bits.
    let hash = scores.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, s| {
        (h ^ s.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let rows = x.nrows();
    let report = serde_json::json!({
        "rows": rows,
        "cols": x.ncols(),
        "threads": rayon::current_num_threads(),
        "parse_s": parse_s,
        "parse_rows_per_s": parse_s.map(|s| rows as f64 / s),
        "fit_s": median(fit_times),
        "score_s": median(score_times),
        "fit_score_s": median(fit_score_times),
        "score_hash": format!("{hash:016x}"),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{report}");
    Ok(())
}
