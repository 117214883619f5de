//! `nomaly sample`: a labelled synthetic CSV, for trying nomaly without data of your own.

use anyhow::{bail, Context, Result};
use nomaly_detect::rng::Rng;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Arguments of `nomaly sample`.
#[derive(clap::Args)]
pub struct Args {
    /// Rows to write.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Numeric feature columns.
    #[arg(long, default_value_t = 5)]
    features: usize,
    /// Share of rows that are anomalies, in [0, 1].
    #[arg(long, default_value_t = 0.02)]
    anomalies: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (standard output when absent).
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Normal rows are correlated Gaussian clusters; anomalies are drawn uniformly from a box
/// four times wider. The last column, `label`, is 1 for anomalies.
pub fn run(args: Args) -> Result<()> {
    if args.features == 0 || args.features > 10_000 {
        bail!("--features must be between 1 and 10000");
    }
    if !(0.0..=1.0).contains(&args.anomalies) {
        bail!("--anomalies must be between 0 and 1");
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut rng = Rng::new(args.seed);
    let header: Vec<String> = (0..args.features).map(|i| format!("f{i}")).collect();
    writeln!(out, "{},label", header.join(","))?;
    let centers = [-2.0, 2.0];
    let mut row = vec![0.0; args.features];
    for _ in 0..args.rows {
        let anomaly = rng.next_f64() < args.anomalies;
        if anomaly {
            row.iter_mut()
                .for_each(|v| *v = (rng.next_f64() - 0.5) * 16.0);
        } else {
            let c = centers[rng.below(2)];
            let shared = gaussian(&mut rng);
            for v in row.iter_mut() {
                *v = c + 0.8 * shared + 0.6 * gaussian(&mut rng);
            }
        }
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.5}")).collect();
        writeln!(out, "{},{}", cells.join(","), u8::from(anomaly))?;
    }
    out.flush().context("writing the sample")?;
    Ok(())
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.next_f64();
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
