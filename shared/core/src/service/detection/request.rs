//! What a detection request asks for, and how it is read: rows and a scorer (a stored
//! model, or an algorithm to fit on the rows) from a JSON body or a CSV body's query
//! string, checked before any work.

use crate::ids::ModelId;
use crate::service::input::{FitSpec, Rows};
use crate::service::Problem;
use serde::{Deserialize, Serialize};

/// Which model scores the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ScorerSpec {
    /// A trained model of the tenant's, optionally with a fixed threshold instead of its
    /// own.
    Stored {
        /// The model.
        model_id: ModelId,
        /// Overrides the model's threshold.
        #[serde(default)]
        threshold: Option<f64>,
    },
    /// A model fitted on the rows being scored.
    Fit(FitSpec),
}

/// A detection request, whatever its transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectSpec {
    /// The scorer.
    pub scorer: ScorerSpec,
    /// Whether to explain each row.
    #[serde(default)]
    pub explain: bool,
}

/// The JSON body of `POST /v1/detect`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    /// Rows to score.
    pub rows: Vec<Vec<f64>>,
    /// Column names.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// A trained model's id (or give `algorithm`).
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// Algorithm to fit on the rows (or give `model_id`).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Its parameters.
    #[serde(default)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Share of anomalies when fitting.
    #[serde(default)]
    pub contamination: Option<f64>,
    /// Fixed score threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed when fitting.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Explain each row.
    #[serde(default)]
    pub explain: bool,
}

/// The options of a CSV body, from the query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DetectQuery {
    /// A trained model's id.
    #[serde(default)]
    pub model_id: Option<ModelId>,
    /// Algorithm to fit.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Its parameters as a JSON object.
    #[serde(default)]
    pub params: Option<String>,
    /// Share of anomalies when fitting.
    #[serde(default)]
    pub contamination: Option<f64>,
    /// Fixed score threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Seed when fitting.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Explain each row.
    #[serde(default)]
    pub explain: bool,
    /// Columns to drop, comma-separated.
    #[serde(default)]
    pub exclude_columns: Option<String>,
}

/// Builds the scorer from the parts a request gave: a model id, or an algorithm.
pub fn scorer(
    model_id: Option<ModelId>,
    algorithm: Option<String>,
    params: Option<serde_json::Map<String, serde_json::Value>>,
    contamination: Option<f64>,
    threshold: Option<f64>,
    seed: Option<u64>,
) -> Result<ScorerSpec, Problem> {
    match (model_id, algorithm) {
        (Some(_), Some(_)) => Err(Problem::invalid_parameter(
            "give `model_id` or `algorithm`, not both",
        )),
        (None, None) => Err(Problem::invalid_parameter(
            "give `model_id` (a trained model) or `algorithm` (fit on these rows)",
        )),
        (Some(model_id), None) => {
            if params.is_some() || contamination.is_some() || seed.is_some() {
                return Err(Problem::invalid_parameter(
                    "`params`, `contamination` and `seed` apply to fitting; a stored model has its own",
                ));
            }
            if threshold.is_some_and(|t| !t.is_finite()) {
                return Err(Problem::invalid_parameter("`threshold` must be finite"));
            }
            Ok(ScorerSpec::Stored {
                model_id,
                threshold,
            })
        }
        (None, Some(algorithm)) => {
            let spec = FitSpec {
                algorithm,
                params: params.unwrap_or_default(),
                contamination,
                threshold,
                seed: seed.unwrap_or(0),
            };
            spec.validate()?;
            Ok(ScorerSpec::Fit(spec))
        }
    }
}

impl DetectRequest {
    /// The rows and the spec, checked.
    pub fn into_parts(self) -> Result<(Rows, DetectSpec), Problem> {
        let scorer = scorer(
            self.model_id,
            self.algorithm,
            self.params,
            self.contamination,
            self.threshold,
            self.seed,
        )?;
        let rows = Rows::new(self.rows, self.columns)?;
        Ok((
            rows,
            DetectSpec {
                scorer,
                explain: self.explain,
            },
        ))
    }
}

impl DetectQuery {
    /// The spec and the columns to exclude, checked.
    pub fn into_parts(self) -> Result<(DetectSpec, Vec<String>), Problem> {
        let params = match self.params {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                Problem::invalid_parameter(format!("`params` must be a JSON object: {e}"))
            })?),
            None => None,
        };
        let scorer = scorer(
            self.model_id,
            self.algorithm,
            params,
            self.contamination,
            self.threshold,
            self.seed,
        )?;
        let exclude = self
            .exclude_columns
            .map(|c| c.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        Ok((
            DetectSpec {
                scorer,
                explain: self.explain,
            },
            exclude,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorer_needs_exactly_one_source() {
        assert!(scorer(None, None, None, None, None, None).is_err());
        let id = ModelId::new();
        assert!(scorer(
            Some(id.clone()),
            Some("iforest".into()),
            None,
            None,
            None,
            None
        )
        .is_err());
        assert!(scorer(Some(id.clone()), None, None, Some(0.1), None, None).is_err());
        assert!(matches!(
            scorer(Some(id), None, None, None, Some(0.5), None),
            Ok(ScorerSpec::Stored {
                threshold: Some(_),
                ..
            })
        ));
        assert!(matches!(
            scorer(None, Some("ecod".into()), None, Some(0.05), None, Some(3)),
            Ok(ScorerSpec::Fit(_))
        ));
        assert!(scorer(None, Some("ecod".into()), None, Some(0.9), None, None).is_err());
    }
}
