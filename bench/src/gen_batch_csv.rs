//! Writes a large numeric CSV for the batch benchmark (`bench/batch_scale.sh`): a header
//! `c0,...,c9` and rows of ten values with four decimals, about 90 bytes a row, until the
//! file reaches the size asked for. Values are normal around a per-column centre; one row
//! in a thousand is shifted far out, so a model has something to find. Deterministic for
//! a seed (xorshift64*), so runs compare.
//!
//!   cargo run --release -p nomaly-bench --bin gen-batch-csv -- OUT.csv [BYTES] [SEED]

use anyhow::{bail, Context, Result};
use std::io::{BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        bail!("usage: gen-batch-csv OUT.csv [BYTES (default 5000000000)] [SEED (default 7)]");
    };
    let target: u64 = match args.get(1) {
        Some(b) => b.parse().context("BYTES is a whole number")?,
        None => 5_000_000_000,
    };
    let seed: u64 = match args.get(2) {
        Some(s) => s.parse().context("SEED is a whole number")?,
        None => 7,
    };
    let file = std::fs::File::create(out).with_context(|| format!("creating {out}"))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let header = "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9\n";
    w.write_all(header.as_bytes())?;
    let mut written = header.len() as u64;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut rows = 0u64;
    let mut line = String::with_capacity(128);
    while written < target {
        line.clear();
        let outlier = rng.next().is_multiple_of(1000);
        for c in 0..10 {
            let centre = 10.0 * c as f64;
            let shift = if outlier { 12.0 } else { 0.0 };
            let v = centre + (1.0 + c as f64 * 0.1) * (rng.normal() + shift);
            if c > 0 {
                line.push(',');
            }
            use std::fmt::Write as _;
            write!(line, "{v:.4}")?;
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        rows += 1;
    }
    w.flush()?;
    eprintln!("wrote {out}: {rows} rows, {written} bytes");
    Ok(())
}
