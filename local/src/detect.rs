//! `nomaly detect`: fit or load a model, score a CSV file, write `score,anomaly` lines.

use anyhow::{bail, Context, Result};
use nomaly_core::table::{read_csv, CsvOptions, Table};
use nomaly_detect::columns::map_columns;
use nomaly_detect::{Algorithm, FitOptions, Model, ThresholdRule};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `nomaly detect`.
#[derive(clap::Args)]
pub struct Args {
    /// Detector to fit: iforest, ecod, copod, hbos, zscore, knn, lof, pca or kmeans.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    algorithm: Option<String>,
    /// A model saved with --save-model, used instead of fitting.
    #[arg(long)]
    model: Option<PathBuf>,
    /// CSV file with a header (plain, or gzip-compressed as .csv.gz).
    #[arg(long)]
    input: PathBuf,
    /// Columns to drop before fitting or scoring, comma-separated (e.g. label).
    #[arg(long, value_delimiter = ',')]
    exclude_columns: Vec<String>,
    /// Share of rows expected to be anomalies, in (0, 0.5] (default 0.1).
    #[arg(long, conflicts_with_all = ["threshold", "model"])]
    contamination: Option<f64>,
    /// Fixed score above which a row is an anomaly (overrides a loaded model's).
    #[arg(long)]
    threshold: Option<f64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0, conflicts_with = "model")]
    seed: u64,
    /// Algorithm parameters as a JSON object, e.g. '{"n_estimators": 200}'.
    #[arg(long, conflicts_with = "model")]
    params: Option<String>,
    /// Write scores here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Save the fitted model here.
    #[arg(long, conflicts_with = "model")]
    save_model: Option<PathBuf>,
    /// Add a column naming the three features that drove each score.
    #[arg(long)]
    explain: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("starting the worker threads")?;
    }
    let started = Instant::now();
    let mut table = load_table(&args.input, &args.exclude_columns)?;
    let parsed = started.elapsed();

    let fit_started = Instant::now();
    let (mut model, scores) = match &args.model {
        Some(path) => {
            let model = load_model(path)?;
            table = columns_for(&model, table, &args.input)?;
            let scores = model.score(table.data.view()).with_context(|| {
                format!("{}: scoring with {}", args.input.display(), path.display())
            })?;
            (model, scores)
        }
        None => {
            let name = args.algorithm.as_deref().unwrap_or_default();
            let algorithm = match &args.params {
                Some(text) => {
                    let params: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(text).context("--params must be a JSON object")?;
                    Algorithm::with_params(name, &params)?
                }
                None => Algorithm::named(name)?,
            };
            let mut options = FitOptions::new(algorithm);
            options.seed = args.seed;
            options.feature_names = Some(table.columns.clone());
            if let Some(c) = args.contamination {
                options.threshold = ThresholdRule::Contamination(c);
            }
            if let Some(t) = args.threshold {
                options.threshold = ThresholdRule::Score(t);
            }
            let fitted = Model::fit(table.data.view(), &options)
                .with_context(|| format!("{}: fitting {name}", args.input.display()))?;
            (fitted.model, fitted.training_scores)
        }
    };
    let scored = fit_started.elapsed();
    if let Some(path) = &args.save_model {
        nomaly_core::atomic_file::write(path, &model.to_json())
            .with_context(|| format!("saving the model to {}", path.display()))?;
    }
    let threshold = args.threshold.unwrap_or(model.threshold());
    if args.threshold.is_some() && args.model.is_some() {
        model = model.with_threshold(ThresholdRule::Score(threshold))?;
    }
    let labels = model.labels(&scores);
    write_scores(&args, &table, &model, &scores, &labels)?;
    eprintln!(
        "{}: {} rows x {} features, {} anomalies above threshold {:.6} (read {:.3} s, {} {:.3} s)",
        model.algorithm().name(),
        table.data.nrows(),
        table.data.ncols(),
        labels.iter().filter(|&&l| l == 1).count(),
        threshold,
        parsed.as_secs_f64(),
        if args.model.is_some() {
            "score"
        } else {
            "fit+score"
        },
        scored.as_secs_f64(),
    );
    Ok(())
}

fn load_table(path: &Path, exclude: &[String]) -> Result<Table> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_csv(file, &CsvOptions::dataset(exclude)).with_context(|| path.display().to_string())
}

fn load_model(path: &Path) -> Result<Model> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the model {}", path.display()))?;
    Model::from_json(&bytes).with_context(|| path.display().to_string())
}

/// The file's columns as the model takes them: its features by name, in its order; other
/// columns are left out (and said so on stderr).
fn columns_for(model: &Model, table: Table, input: &Path) -> Result<Table> {
    let map = map_columns(
        model.feature_names(),
        Some(&table.columns),
        table.columns.len(),
    )
    .with_context(|| input.display().to_string())?;
    if !map.ignored.is_empty() {
        eprintln!(
            "{}: left out columns the model does not take: {}",
            input.display(),
            map.ignored.join(", ")
        );
    }
    if map.is_identity(table.columns.len()) {
        return Ok(table);
    }
    Ok(Table {
        columns: model.feature_names().to_vec(),
        data: table.data.select(ndarray::Axis(1), &map.order),
    })
}

fn write_scores(
    args: &Args,
    table: &Table,
    model: &Model,
    scores: &[f64],
    labels: &[u8],
) -> Result<()> {
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let write = |out: &mut BufWriter<Box<dyn Write>>| -> Result<()> {
        if args.explain {
            writeln!(out, "score,anomaly,top_features")?;
            for (i, (s, l)) in scores.iter().zip(labels).enumerate() {
                let e = model.explain(table.data.row(i))?;
                let top: Vec<String> = e
                    .features
                    .iter()
                    .take(3)
                    .map(|f| format!("{}:{:.4}", f.feature, f.contribution))
                    .collect();
                writeln!(out, "{s},{l},{}", top.join(";"))?;
            }
        } else {
            writeln!(out, "score,anomaly")?;
            for (s, l) in scores.iter().zip(labels) {
                writeln!(out, "{s},{l}")?;
            }
        }
        out.flush()?;
        Ok(())
    };
    let target = match &args.output {
        Some(path) => path.display().to_string(),
        None => "standard output".to_string(),
    };
    write(&mut out).with_context(|| format!("writing the scores to {target}"))
}
