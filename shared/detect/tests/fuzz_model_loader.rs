//! Bounded fuzzing of the model loader, run in CI for a fixed number of cases: models of
//! every algorithm, saved, then damaged (numbers replaced by extreme values, arrays cut
//! or emptied, fields dropped, bytes flipped, the file truncated). `Model::from_json`
//! must refuse a damaged file with an error, or return a model that scores rows of its
//! width without panicking.

use ndarray::Array2;
use nomaly_detect::{Algorithm, FitOptions, Model};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use std::cell::Cell;

const ALGORITHMS: [&str; 9] = [
    "iforest", "ecod", "copod", "hbos", "zscore", "knn", "lof", "pca", "kmeans",
];

fn saved_models() -> Vec<Vec<u8>> {
    let x = Array2::from_shape_fn((60, 3), |(i, j)| {
        ((i * 7 + j * 13) % 17) as f64 * 0.3 + if i == 59 { 20.0 } else { 0.0 }
    });
    ALGORITHMS
        .iter()
        .map(|name| {
            // Few trees keep the iforest file small, so damage lands anywhere in it.
            let params = match *name {
                "iforest" => serde_json::json!({"n_estimators": 5}),
                _ => serde_json::json!({}),
            };
            let params = params.as_object().cloned().unwrap_or_default();
            let options = FitOptions::new(Algorithm::with_params(name, &params).unwrap());
            Model::fit(x.view(), &options).unwrap().model.to_json()
        })
        .collect()
}

/// One damage to a JSON value, chosen by `pick` at the node numbered `at` (depth first).
#[derive(Debug, Clone)]
enum Damage {
    Number(f64),
    CutArray(usize),
    EmptyArray,
    DropField,
    Retype,
}

fn damage(v: &mut Value, at: &mut usize, target: usize, how: &Damage) -> bool {
    if *at == target {
        match (how, &mut *v) {
            (Damage::Number(n), Value::Number(_)) => {
                *v = serde_json::Number::from_f64(*n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            (Damage::CutArray(k), Value::Array(a)) => a.truncate(*k % (a.len() + 1)),
            (Damage::EmptyArray, Value::Array(a)) => a.clear(),
            (Damage::DropField, Value::Object(o)) => {
                if let Some(k) = o.keys().next().cloned() {
                    o.remove(&k);
                }
            }
            (Damage::Retype, _) => *v = Value::String("x".into()),
            _ => return false,
        }
        return true;
    }
    *at += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| damage(c, at, target, how)),
        Value::Object(o) => o.values_mut().any(|c| damage(c, at, target, how)),
        _ => false,
    }
}

/// Nodes of a JSON value, depth first, as `damage` numbers them.
fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn any_damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop_oneof![
            Just(-1.0),
            Just(0.0),
            Just(1e300),
            Just(-1e300),
            Just(4294967296.0),
            Just(1e20),
            Just(0.5),
            Just(-0.0),
            any::<f64>()
        ]
        .prop_map(Damage::Number),
        (0..10usize).prop_map(Damage::CutArray),
        Just(Damage::EmptyArray),
        Just(Damage::DropField),
        Just(Damage::Retype),
    ]
}

/// Loads `bytes`; if that works, scores rows of the model's width (and the explanation
/// of one), which must not panic.
fn load_and_use(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(model) = Model::from_json(bytes) {
        let width = model.n_features();
        prop_assume!(width <= 1000);
        let rows = Array2::from_shape_fn((4, width), |(i, j)| (i * 3 + j) as f64 - 2.0);
        let _ = model.score(rows.view());
        let _ = model.explain(rows.row(0));
    }
    Ok(())
}

#[test]
fn damaged_models_are_refused_or_score_without_panicking() {
    let models = saved_models();
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..models.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any_damage()), 1..4),
    );
    let (damaged, loaded) = (Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&strategy, |(which, damages)| {
            let mut value: Value = serde_json::from_slice(&models[which]).unwrap();
            let nodes = count_nodes(&value);
            let mut hit = false;
            for (at, how) in &damages {
                let mut counter = 0;
                hit |= damage(&mut value, &mut counter, at.index(nodes), how);
            }
            let bytes = serde_json::to_vec(&value).unwrap();
            damaged.set(damaged.get() + usize::from(hit));
            loaded.set(loaded.get() + usize::from(hit && Model::from_json(&bytes).is_ok()));
            load_and_use(&bytes)
        })
        .unwrap();
    let (damaged, loaded) = (damaged.get(), loaded.get());
    println!(
        "model loader: 3000 cases, {damaged} models damaged, {loaded} of them still loaded and scored, none panicked"
    );
    assert!(damaged > 1000, "the damage must land: {damaged} of 3000");
}

#[test]
fn truncated_and_flipped_files_are_refused_or_usable() {
    let models = saved_models();
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..models.len(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(which, at, byte, truncate)| {
            let mut bytes = models[which].clone();
            let i = at.index(bytes.len());
            if truncate {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            load_and_use(&bytes)
        })
        .unwrap();
    println!("model loader: 2000 truncated or flipped files, none panicked");
}
