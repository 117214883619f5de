//! A report as one self-contained HTML page: inline CSS and SVG, no script, nothing
//! fetched, every value from the data escaped.

use super::svg::{self, esc, num};
use crate::domain::ModelRecord;
use crate::service::detection::{Contribution, Detection};
use std::fmt::Write;

/// One of the highest-scoring rows, with the features that drove its score.
#[derive(Debug, Clone)]
pub struct TopAnomaly {
    /// Zero-based row.
    pub row: usize,
    /// Its score.
    pub score: f64,
    /// Its top features, highest contribution first.
    pub features: Vec<Contribution>,
}

/// What a report shows.
pub struct Contents<'a> {
    /// The model.
    pub model: &'a ModelRecord,
    /// Where the rows came from, in words (`dataset cardio.csv (ds_...)`).
    pub source: String,
    /// The scores of every row.
    pub detection: &'a Detection,
    /// The highest-scoring rows, explained.
    pub top: Vec<TopAnomaly>,
    /// The explanation method.
    pub explanation_method: Option<String>,
    /// The profile of the rows (`profile::Profile` as JSON), if known.
    pub profile: Option<&'a serde_json::Value>,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:960px;color:#222;padding:0 1rem}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}\
.meta{color:#555}table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:1rem;flex-wrap:wrap}\
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:8rem}.card b{display:block;font-size:1.3rem}\
.issues li{color:#8a4b00}svg{max-width:100%;height:auto}#top svg{width:420px}";

/// The report page.
pub fn html(c: &Contents<'_>) -> String {
    let d = c.detection;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nomaly report: {}</title><style>{STYLE}</style></head><body>",
        esc(c.model.id.as_str())
    );
    let _ = write!(
        out,
        "<h1>Anomaly report</h1><p class=\"meta\">Model <code>{}</code> ({}) on {}. Generated {}.</p>",
        esc(c.model.id.as_str()),
        esc(&c.model.algorithm),
        esc(&c.source),
        esc(&c.generated_at)
    );
    let share = if d.rows > 0 {
        100.0 * d.anomalies as f64 / d.rows as f64
    } else {
        0.0
    };
    let _ = write!(
        out,
        "<div class=\"cards\"><div class=\"card\" id=\"rows\">rows scored<b>{}</b></div><div class=\"card\" id=\"anomalies\">anomalies<b>{} ({:.1}%)</b></div><div class=\"card\">threshold<b>{}</b></div><div class=\"card\">features<b>{}</b></div><div class=\"card\">trained on<b>{} rows</b></div></div>",
        d.rows,
        d.anomalies,
        share,
        esc(&num(d.threshold)),
        d.features,
        esc(&c.model.training.get("rows").map(|v| v.to_string()).unwrap_or_else(|| "?".into()))
    );
    out.push_str("<h2>Score distribution</h2><p class=\"meta\">Rows per score bin; bins at or above the threshold in red.</p>");
    out.push_str(&svg::histogram(&d.scores, d.threshold, 40));
    out.push_str("<h2>Scores in row order</h2><p class=\"meta\">Each row's score; anomalies marked in red, the dashed line is the threshold.</p>");
    out.push_str(&svg::series(&d.scores, &d.labels, d.threshold));
    top_anomalies(&mut out, c);
    profile(&mut out, c.profile);
    out.push_str("</body></html>");
    out
}

fn top_anomalies(out: &mut String, c: &Contents<'_>) {
    let _ = write!(
        out,
        "<h2>Top anomalies</h2><p class=\"meta\">The {} highest-scoring rows and the features that drove each score ({}).</p>",
        c.top.len(),
        esc(c.explanation_method.as_deref().unwrap_or("no explanation"))
    );
    out.push_str("<table id=\"top\"><tr><th>row</th><th>score</th><th>top features</th></tr>");
    for t in &c.top {
        let items: Vec<(String, f64)> = t
            .features
            .iter()
            .map(|f| (f.feature.clone(), f.contribution))
            .collect();
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            t.row,
            esc(&num(t.score)),
            svg::bars(&items)
        );
    }
    out.push_str("</table>");
}

fn profile(out: &mut String, profile: Option<&serde_json::Value>) {
    out.push_str("<h2>Data profile</h2>");
    let Some(p) = profile else {
        out.push_str("<p class=\"meta\">No profile.</p>");
        return;
    };
    let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
    let _ = write!(
        out,
        "<p class=\"meta\">{} rows, {} columns, {} ragged rows skipped.</p>",
        field(p, "rows").map(num).unwrap_or_default(),
        field(p, "columns").map(num).unwrap_or_default(),
        field(p, "ragged_rows").map(num).unwrap_or_default()
    );
    out.push_str("<table id=\"profile\"><tr><th>column</th><th>type</th><th>missing</th><th>distinct</th><th>min</th><th>mean</th><th>max</th><th>std</th><th>spread (p5–p95, box p25–p75, median)</th><th>note</th></tr>");
    let columns = p
        .get("column_profiles")
        .and_then(|c| c.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for col in columns {
        let text = |k: &str| col.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let cell = |k: &str| field(col, k).map(num).unwrap_or_default();
        let quantile = |k: &str| {
            col.get("quantiles")
                .and_then(|q| q.get(k))
                .and_then(|v| v.as_f64())
        };
        let spread = match (
            field(col, "min"),
            quantile("p5"),
            quantile("p25"),
            quantile("p50"),
            quantile("p75"),
            quantile("p95"),
            field(col, "max"),
        ) {
            (Some(lo), Some(a), Some(b), Some(m), Some(d), Some(e), Some(hi)) => {
                svg::spread(lo, [a, b, m, d, e], hi)
            }
            _ => String::new(),
        };
        let mut note = Vec::new();
        if col.get("constant").and_then(|v| v.as_bool()) == Some(true) {
            note.push("constant".to_string());
        }
        if let Some(of) = col.get("duplicate_of").and_then(|v| v.as_str()) {
            note.push(format!("duplicate of {of}"));
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{spread}</td><td>{}</td></tr>",
            esc(text("name")),
            esc(text("type")),
            cell("missing"),
            cell("distinct"),
            cell("min"),
            cell("mean"),
            cell("max"),
            cell("std"),
            esc(&note.join(", "))
        );
    }
    out.push_str("</table>");
    let issues: Vec<&str> = p
        .get("issues")
        .and_then(|i| i.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !issues.is_empty() {
        out.push_str("<ul class=\"issues\">");
        for i in issues {
            let _ = write!(out, "<li>{}</li>", esc(i));
        }
        out.push_str("</ul>");
    }
}
